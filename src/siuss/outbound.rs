//! The `siuss` outbound adapter: a `prestazione.erogata` event becomes the `PS_PSA_SINA` flusso
//! INPS will poll (one Beneficiario, one PrestazioniSociali).
//!
//! One delivery attempt:
//! 1. finds the ente the event's tenant feeds (`[[inps.enti]]`);
//! 2. skips a single cooperative delivery (carattere 1, one day, no `mese`): SIUSS gets the
//!    monthly aggregate from the monthly close instead;
//! 3. builds the flusso from the beneficiary's latest `persona.registrata` and, when there is one,
//!    the latest `valutazione.registrata` with SINA — a missing persona is transient (it may
//!    arrive later);
//! 4. runs the SIUSS rules (`check_waas`) — a broken rule or a build error is permanent, and the
//!    reason names the rule and the path;
//! 5. compares with what INPS holds for the same `idPrestazione`: same content → nothing new;
//!    different content → a cancellation (`TipoOperazione="C"`) of what was published, then the new
//!    insertion; `annullata: true` → the cancellation alone;
//! 6. stores the flussi: the store numbers them (per-ente daily progressive, `ts_flusso`) in the
//!    same commit.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use csi_gateway_inps::{
    check_waas, from_events_with, id_flusso, to_base64, to_xml, CodiciPrestazione, EnteInfo,
    PresenzaProvaMezzi, PsPsaSina, Tables, Tipo, TipoOperazione,
};
use csi_gateway_sdk::{BoxFuture, Delivered, DeliveryError, Outbound, OutboundEvent};
use serde_json::Value;
use time::Date;

use super::day::{rome_date, yyyymmdd};
use crate::config::InpsConfig;
use crate::metrics::{Metrics, OperazioneLabel, RuleLabel};
use crate::store::now_ms;
use crate::store::siuss::{FlussoRow, NewFlusso, Operazione, Publish, Published, SiussStore};

/// One ente at INPS and the tenant that feeds it.
#[derive(Debug, Clone)]
pub struct Ente {
    pub tenant: String,
    pub info: EnteInfo,
    pub denominazione: String,
}

/// The configured enti.
#[derive(Debug, Clone, Default)]
pub struct Enti(Vec<Ente>);

impl Enti {
    pub fn new(config: &InpsConfig) -> anyhow::Result<Self> {
        config
            .enti
            .iter()
            .enumerate()
            .map(|(i, e)| {
                let ppm = PresenzaProvaMezzi::from_code(&e.presenza_prova_mezzi)
                    .with_context(|| format!("inps.enti[{i}].presenza_prova_mezzi"))?;
                Ok(Ente {
                    tenant: e.tenant.clone(),
                    denominazione: e.denominazione.trim().to_string(),
                    info: EnteInfo {
                        codice: e.codice.clone().unwrap_or_else(|| e.belfiore.clone()),
                        denominazione: Some(e.denominazione.trim().to_string()),
                        belfiore: e.belfiore.clone(),
                        cf_operatore: e.cf_operatore.clone(),
                        presenza_prova_mezzi: ppm,
                    },
                })
            })
            .collect::<anyhow::Result<_>>()
            .map(Enti)
    }

    /// The ente fed by `tenant`.
    pub fn by_tenant(&self, tenant: &str) -> Option<&Ente> {
        self.0.iter().find(|e| e.tenant == tenant)
    }

    /// The ente with Belfiore code `belfiore`.
    pub fn by_belfiore(&self, belfiore: &str) -> Option<&Ente> {
        self.0.iter().find(|e| e.info.belfiore == belfiore)
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Where the codice prestazione table is: the configured path, else
/// `./mappings/inps/codici-prestazione.csv`, else the one in the source tree.
pub fn locate_table(configured: Option<&Path>) -> PathBuf {
    if let Some(p) = configured {
        return p.to_path_buf();
    }
    let local = PathBuf::from("mappings/inps/codici-prestazione.csv");
    if local.is_file() {
        return local;
    }
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("mappings/inps/codici-prestazione.csv")
}

/// The SIUSS tables: the built-in ISTAT ones, the codici prestazione from the configured file.
pub fn tables(config: &InpsConfig) -> anyhow::Result<Tables> {
    let path = locate_table(config.codici_prestazione.as_deref());
    let prestazioni = CodiciPrestazione::from_path(&path).context("inps.codici_prestazione")?;
    let builtin = Tables::builtin();
    let nazioni = match &config.nazioni {
        Some(p) => {
            let text = std::fs::read_to_string(p)
                .with_context(|| format!("inps.nazioni: reading {}", p.display()))?;
            csi_gateway_inps::tables::Nazioni::from_csv(&text).context("inps.nazioni")?
        }
        None => builtin.nazioni,
    };
    Ok(Tables { prestazioni, nazioni, ..builtin })
}

/// What `csi-gateway check-config` says about `[inps]`.
pub fn check_config(config: &InpsConfig) -> anyhow::Result<String> {
    let enti = Enti::new(config)?;
    let tables = tables(config)?;
    let access = super::voucher::Access::new(&config.auth)?;
    let nazioni = match config.nazioni {
        Some(_) => format!("{} states", tables.nazioni.len()),
        None => format!(
            "the built-in table of {} states (persons of other states cannot be reported: set inps.nazioni)",
            tables.nazioni.len()
        ),
    };
    Ok(format!(
        "inps: {} enti, {} codici prestazione, {nazioni}, WaaS auth {}",
        enti.len(),
        tables.prestazioni.len(),
        access.describe()
    ))
}

const STRIPES: usize = 64;

/// The `siuss` outbound adapter.
pub struct Siuss {
    enti: Enti,
    tables: Tables,
    store: Arc<dyn SiussStore>,
    metrics: Arc<Metrics>,
    /// Deliveries about the same prestazione take turns (the decision "what does INPS hold" must
    /// not race); different prestazioni run in parallel.
    stripes: Vec<tokio::sync::Mutex<()>>,
}

fn permanent(reason: impl Into<String>) -> DeliveryError {
    DeliveryError::permanent(reason)
}

fn store_failure(e: crate::store::StoreError) -> DeliveryError {
    DeliveryError::transient(format!("the store cannot take the flusso now ({e})"))
}

/// A single cooperative delivery: periodic, one day, hours, no month. The monthly close sends
/// SIUSS the month instead (`mese`, `oreServizioMensile`).
pub(crate) fn single_delivery(d: &Value) -> bool {
    d["carattere"] == "1"
        && d.get("mese").is_none()
        && d.get("ore").is_some()
        && d.get("dataInizio").is_some()
        && d["dataInizio"] == d["dataFine"]
}

/// SHA-256 of the flusso's content, independent of its `Nome`.
fn content_digest(f: &PsPsaSina) -> String {
    crate::audit::digest(&to_xml(&f.clone().with_nome("").into()))
}

fn render(f: PsPsaSina, belfiore: String, day: Date) -> crate::store::siuss::Render {
    Box::new(move |n| {
        let id = id_flusso(&belfiore, Tipo::Ps, day, n).map_err(|e| e.to_string())?;
        let b64 = to_base64(&f.with_nome(id.clone()).into());
        Ok((id, b64))
    })
}

impl Siuss {
    pub fn new(
        config: &InpsConfig,
        store: Arc<dyn SiussStore>,
        metrics: Arc<Metrics>,
    ) -> anyhow::Result<Self> {
        Ok(Self {
            enti: Enti::new(config)?,
            tables: tables(config)?,
            store,
            metrics,
            stripes: (0..STRIPES).map(|_| tokio::sync::Mutex::new(())).collect(),
        })
    }

    fn stripe(&self, ente: &str, id_prestazione: &str) -> &tokio::sync::Mutex<()> {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        (ente, id_prestazione).hash(&mut h);
        &self.stripes[(h.finish() as usize) % STRIPES]
    }

    /// Builds the flusso and runs the SIUSS rules on it, numbered as it will be.
    fn build(
        &self,
        ente: &Ente,
        persona: &Value,
        prestazione: &Value,
        valutazione: Option<&Value>,
        op: TipoOperazione,
        day: Date,
    ) -> Result<PsPsaSina, DeliveryError> {
        let f = from_events_with(&self.tables, &ente.info, persona, prestazione, valutazione, op)
            .map_err(|e| permanent(format!("SIUSS flusso cannot be built ({e})")))?;
        let sample =
            id_flusso(&ente.info.belfiore, Tipo::Ps, day, 1).map_err(|e| permanent(e.to_string()))?;
        let violations = check_waas(&f.clone().with_nome(sample));
        if let Some(first) = violations.first() {
            for v in &violations {
                self.metrics.siuss_refused.get_or_create(&RuleLabel { rule: v.rule.to_string() }).inc();
            }
            let list: Vec<String> =
                violations.iter().map(|v| format!("{} at {}: {}", v.rule, v.path, v.message)).collect();
            return Err(permanent(format!(
                "SIUSS rule {} broken at {} (nothing sent to INPS; correct the source and send it again, \
                 or replay): {}",
                first.rule,
                first.path,
                list.join("; ")
            )));
        }
        Ok(f)
    }

    /// The cancellation of a published insertion, rebuilt from the events it was built from.
    async fn cancellation_of(
        &self,
        ente: &Ente,
        published: &FlussoRow,
        day: Date,
    ) -> Result<NewFlusso, DeliveryError> {
        let load = |id: String| async move {
            self.store
                .stored_event(id.clone())
                .await
                .map_err(store_failure)?
                .map(|e| e.event["data"].clone())
                .ok_or_else(|| permanent(format!("event {id} of flusso {} is missing", published.id_flusso)))
        };
        let prestazione = load(published.built_from_event_id.clone()).await?;
        let persona = load(published.persona_event_id.clone()).await?;
        let valutazione = match &published.valutazione_event_id {
            Some(id) => Some(load(id.clone()).await?),
            None => None,
        };
        let f = self
            .build(ente, &persona, &prestazione, valutazione.as_ref(), TipoOperazione::C, day)
            .map_err(|e| permanent(format!("cannot cancel {}: {}", published.id_flusso, e.reason())))?;
        Ok(NewFlusso {
            operazione: Operazione::C,
            built_from_event_id: published.built_from_event_id.clone(),
            persona_event_id: published.persona_event_id.clone(),
            valutazione_event_id: published.valutazione_event_id.clone(),
            content_digest: published.content_digest.clone(),
            cancels: Some(published.id_flusso.clone()),
            render: render(f, ente.info.belfiore.clone(), day),
        })
    }

    async fn publish(&self, ev: &OutboundEvent) -> Result<Delivered, DeliveryError> {
        if !ev.event_type.starts_with("it.lombardia.csi.prestazione.erogata.") {
            return Err(permanent(format!(
                "adapter siuss takes prestazione.erogata events only, not {}: fix [[routes]]",
                ev.event_type
            )));
        }
        let Some(ente) = self.enti.by_tenant(&ev.tenant) else {
            return Err(permanent(format!("tenant {} feeds no ente of [[inps.enti]]", ev.tenant)));
        };
        let cloud: Value = serde_json::from_slice(&ev.body)
            .map_err(|e| permanent(format!("the stored event is not JSON ({e})")))?;
        let data = &cloud["data"];
        if single_delivery(data) {
            return Ok(Delivered {
                detail: "not for SIUSS: a single delivery (carattere 1, one day, no mese); \
                         SIUSS receives the month from the monthly close"
                    .into(),
            });
        }
        let Some(id_prestazione) = data["idPrestazione"].as_str() else {
            return Err(permanent("/data/idPrestazione: missing"));
        };
        let annullata = data["annullata"] == true;
        let day = rome_date(now_ms());
        let _turn = self.stripe(&ente.info.belfiore, id_prestazione).lock().await;

        let state = self
            .store
            .prestazione_state(ente.info.belfiore.clone(), id_prestazione.to_string())
            .await
            .map_err(store_failure)?;
        let current = state.and_then(|s| s.current);
        let mut flussi = Vec::new();
        if annullata {
            if let Some(c) = &current {
                flussi.push(self.cancellation_of(ente, c, day).await?);
            }
        } else {
            let pseudonimo = data["beneficiario"]["pseudonimo"].as_str().unwrap_or_default();
            let Some((persona_row, persona)) =
                self.store.persona(ev.tenant.clone(), pseudonimo.to_string()).await.map_err(store_failure)?
            else {
                return Err(DeliveryError::transient(
                    "persona non registrata: no persona.registrata for /data/beneficiario/pseudonimo yet \
                     (SIUSS needs the beneficiary's anagrafica)",
                ));
            };
            let valutazione = self
                .store
                .valutazione_sina(ev.tenant.clone(), pseudonimo.to_string())
                .await
                .map_err(store_failure)?;
            let f =
                self.build(ente, &persona, data, valutazione.as_ref().map(|v| &v.1), TipoOperazione::I, day)?;
            let digest = content_digest(&f);
            if let Some(c) = &current {
                if c.content_digest == digest {
                    return Ok(Delivered {
                        detail: format!("unchanged: INPS already has this prestazione as {}", c.id_flusso),
                    });
                }
                flussi.push(self.cancellation_of(ente, c, day).await?);
            }
            flussi.push(NewFlusso {
                operazione: Operazione::I,
                built_from_event_id: ev.id.clone(),
                persona_event_id: persona_row.event_id,
                valutazione_event_id: valutazione.map(|v| v.0.event_id),
                content_digest: digest,
                cancels: None,
                render: render(f, ente.info.belfiore.clone(), day),
            });
        }
        let publish = Publish {
            tenant: ev.tenant.clone(),
            ente: ente.info.belfiore.clone(),
            denominazione: ente.denominazione.clone(),
            day: yyyymmdd(day),
            id_prestazione: id_prestazione.to_string(),
            event_id: ev.id.clone(),
            expect_current: current.as_ref().map(|c| c.id_flusso.clone()),
            annullata,
            flussi,
            actor: "gateway".into(),
        };
        match self.store.siuss_publish(publish).await.map_err(store_failure)? {
            Published::Offered(offered) if offered.is_empty() => Ok(Delivered {
                detail: format!(
                    "annulled: prestazione {id_prestazione} was never published to SIUSS, nothing to cancel"
                ),
            }),
            Published::Offered(offered) => {
                let list: Vec<String> =
                    offered.iter().map(|(id, op)| format!("{id} ({})", op.as_str())).collect();
                for (_, op) in &offered {
                    self.metrics
                        .siuss_flussi
                        .get_or_create(&OperazioneLabel { operazione: op.as_str().into() })
                        .inc();
                }
                tracing::info!(event_id = %ev.id, flussi = %list.join(", "), "SIUSS flussi offered");
                Ok(Delivered { detail: format!("offered to INPS: {}", list.join(", ")) })
            }
            Published::AlreadyDone(ids) if ids.is_empty() => {
                Ok(Delivered { detail: "already handled: nothing new for SIUSS".into() })
            }
            Published::AlreadyDone(ids) => {
                Ok(Delivered { detail: format!("already offered: {}", ids.join(", ")) })
            }
            Published::Superseded { by } => Ok(Delivered {
                detail: format!(
                    "superseded: event {by} about the same prestazione was handled after this one"
                ),
            }),
            Published::Conflict => {
                Err(DeliveryError::transient("the prestazione changed meanwhile; trying again"))
            }
            Published::Failed(reason) => Err(permanent(reason)),
        }
    }
}

impl Outbound for Siuss {
    fn kind(&self) -> &'static str {
        "siuss"
    }

    fn deliver<'a>(&'a self, event: &'a OutboundEvent) -> BoxFuture<'a, Result<Delivered, DeliveryError>> {
        Box::pin(self.publish(event))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn single_deliveries_are_told_from_monthly_records() {
        let daily =
            json!({"carattere": "1", "dataInizio": "2026-10-03", "dataFine": "2026-10-03", "ore": "2.00"});
        assert!(single_delivery(&daily));
        let mut monthly = daily.clone();
        monthly["mese"] = json!("2026-10");
        assert!(!single_delivery(&monthly));
        let one_off = json!({"carattere": "2", "dataErogazione": "2026-10-03", "ore": "2.00"});
        assert!(!single_delivery(&one_off));
        let yearly =
            json!({"carattere": "1", "dataInizio": "2026-01-01", "dataFine": "2026-12-31", "ore": "2.00"});
        assert!(!single_delivery(&yearly));
    }

    #[test]
    fn a_states_table_can_be_configured() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("nazioni.csv");
        std::fs::write(&file, "istat;siuss;nome\n100;380;Italia\n314;156;Cina\n").unwrap();
        let mut config: InpsConfig = serde_json::from_value(json!({
            "enti": [], "auth": {"mode": "trusted-gateway", "trusted_peers": ["127.0.0.1"]}
        }))
        .unwrap();
        assert_eq!(tables(&config).unwrap().nazioni.siuss("314"), None, "not in the built-in table");
        config.nazioni = Some(file.clone());
        assert_eq!(tables(&config).unwrap().nazioni.siuss("314"), Some("156"));
        std::fs::write(&file, "istat;siuss\n314;CN\n").unwrap();
        let e = format!("{:#}", tables(&config).unwrap_err());
        assert!(e.starts_with("inps.nazioni"), "{e}");
    }

    #[test]
    fn the_table_in_mappings_is_found() {
        let p = locate_table(None);
        assert!(p.is_file(), "{}", p.display());
        assert!(CodiciPrestazione::from_path(&p).unwrap().get("A1.16").is_some());
    }
}
