//! Rows per second of `read_csv` on 100,000 generated rows (Excel dialect: `;`, decimal commas,
//! dd/mm/yyyy, hh.mm, a code table). Run with `cargo run --release -p csi-gateway-coop --example
//! throughput`.

use std::path::Path;
use std::time::Instant;

use csi_gateway_coop::{read_csv, Checks, Mapping, RowOutcome};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../mappings/coop");
    let mapping = Mapping::load_named(&dir, "coop-excel-csv")?;
    let rows = 100_000u64;
    let mut csv = String::from("ID;Data;Dalle;Alle;Operatore;CF Utente;Ore;Servizio;Km;Note\r\n");
    for i in 0..rows {
        let slot = i % 8;
        let (op, day) = ((i / 8) % 250, i / 2000);
        let (d, m) = (1 + day % 28, 1 + (day / 28) % 10);
        csv.push_str(&format!(
            "AUR-{i};{d:02}/{m:02}/2026;{:02}.00;{:02}.45;OP-{op};RSSMRA85T10A562S;0,75;ASS.DOM;12,5;visita più lunga\r\n",
            8 + slot,
            8 + slot
        ));
    }
    let bytes = csv.into_bytes();
    let checks = Checks::new(time::macros::date!(2026 - 11 - 01));
    let start = Instant::now();
    let (mut ok, mut rejected) = (0u64, 0u64);
    for r in read_csv(&bytes[..], &mapping, &checks) {
        match r.outcome {
            RowOutcome::Delivery(_) => ok += 1,
            _ => rejected += 1,
        }
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "read_csv: {rows} rows ({:.1} MB) in {secs:.2} s = {:.0} rows/s ({ok} deliveries, {rejected} other)",
        bytes.len() as f64 / 1e6,
        rows as f64 / secs
    );
    Ok(())
}
