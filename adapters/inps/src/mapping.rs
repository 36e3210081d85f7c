//! Building flows from interchange events (contracts v1, the events' `data` objects).
//!
//! What the contracts do not carry is decided here, and documented in the crate README:
//! `PresenzaProvaMezzi` (code table, else the ente default), `PresaCarico` (1 when the prestazione
//! belongs to a progetto individuale), `ProtocolloDomanda` (`idProgetto`, else `idPrestazione`),
//! the DSU fields and `DataEvento` (absent).

use serde_json::Value;
use time::Date;

use crate::codes::*;
use crate::id::sinba_id;
use crate::model::*;
use crate::sinba::*;
use crate::tables::Tables;
use crate::values::{parse_date, Importo, Ore};

const PERSONA: &str = "persona.registrata";
const PRESTAZIONE: &str = "prestazione.erogata";
const VALUTAZIONE: &str = "valutazione.registrata";
const NUCLEO: &str = "nucleo.aggiornato";

/// What the flows need to know about the ente that publishes them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnteInfo {
    /// `Ente@Codice`: the ente's code at INPS (1–32 characters).
    pub codice: String,
    /// `Ente@Denominazione`.
    pub denominazione: Option<String>,
    /// `Ente@Indirizzo`: Belfiore code of the comune of the seat (also the `id_flusso` prefix).
    pub belfiore: String,
    /// `Ente@CFOperatore`: codice fiscale of the operator responsible for the flows.
    pub cf_operatore: String,
    /// `PresenzaProvaMezzi` when the prestazioni table does not say (not in the contracts).
    pub presenza_prova_mezzi: PresenzaProvaMezzi,
}

impl EnteInfo {
    /// The `IdentificazioneFlusso` header with `Nome` = `nome` (use the `id_flusso`).
    pub fn header(&self, nome: impl Into<String>) -> IdentificazioneFlusso {
        IdentificazioneFlusso {
            nome: nome.into(),
            ente: Ente {
                codice: self.codice.clone(),
                denominazione: self.denominazione.clone(),
                indirizzo: self.belfiore.clone(),
                cf_operatore: self.cf_operatore.clone(),
            },
        }
    }
}

/// An event does not carry what the flow needs. `pointer` is the JSON pointer in the CloudEvent
/// (`/data/...`). Messages never contain personal values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BuildError {
    /// A field SIUSS needs is missing.
    #[error("{event} {pointer}: missing, SIUSS needs {what}")]
    Missing {
        /// Event type (without `it.lombardia.csi.` and version).
        event: &'static str,
        /// JSON pointer of the missing field.
        pointer: String,
        /// What it is needed for.
        what: &'static str,
    },
    /// A field is present but cannot be used.
    #[error("{event} {pointer}: {reason}")]
    Invalid {
        /// Event type.
        event: &'static str,
        /// JSON pointer of the field.
        pointer: String,
        /// Why.
        reason: String,
    },
    /// A code has no row in a translation table.
    #[error("{event} {pointer}: code {code:?} has no row in table {table}")]
    Unmapped {
        /// Event type.
        event: &'static str,
        /// JSON pointer of the field.
        pointer: String,
        /// Table name (file name under `tables/`).
        table: &'static str,
        /// The code (never personal data: ISTAT or prestazione codes).
        code: String,
    },
    /// The events are about different persons.
    #[error("{event} {pointer}: refers to another person than persona.registrata")]
    Mismatch {
        /// Event type.
        event: &'static str,
        /// JSON pointer of the person reference.
        pointer: String,
    },
}

fn missing(event: &'static str, pointer: &str, what: &'static str) -> BuildError {
    BuildError::Missing { event, pointer: format!("/data{pointer}"), what }
}

fn invalid(event: &'static str, pointer: &str, reason: impl Into<String>) -> BuildError {
    BuildError::Invalid { event, pointer: format!("/data{pointer}"), reason: reason.into() }
}

fn opt_str<'a>(v: &'a Value, event: &'static str, ptr: &str) -> Result<Option<&'a str>, BuildError> {
    match v.pointer(ptr) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(invalid(event, ptr, "expected a string")),
    }
}

fn req_str<'a>(
    v: &'a Value,
    event: &'static str,
    ptr: &str,
    what: &'static str,
) -> Result<&'a str, BuildError> {
    opt_str(v, event, ptr)?.ok_or_else(|| missing(event, ptr, what))
}

fn opt_date(v: &Value, event: &'static str, ptr: &str) -> Result<Option<Date>, BuildError> {
    opt_str(v, event, ptr)?
        .map(|s| parse_date(s).ok_or_else(|| invalid(event, ptr, "not a YYYY-MM-DD date")))
        .transpose()
}

fn opt_importo(v: &Value, event: &'static str, ptr: &str) -> Result<Option<Importo>, BuildError> {
    opt_str(v, event, ptr)?
        .map(|s| s.parse().map_err(|_| invalid(event, ptr, "not an amount with two decimals")))
        .transpose()
}

fn code<T>(
    v: &Value,
    event: &'static str,
    ptr: &str,
    parse: fn(&str) -> Option<T>,
) -> Result<Option<T>, BuildError> {
    opt_str(v, event, ptr)?
        .map(|s| parse(s).ok_or_else(|| invalid(event, ptr, format!("code {s:?} is not allowed by the XSD"))))
        .transpose()
}

fn req_code<T>(
    v: &Value,
    event: &'static str,
    ptr: &str,
    parse: fn(&str) -> Option<T>,
) -> Result<T, BuildError> {
    code(v, event, ptr, parse)?.ok_or_else(|| missing(event, ptr, "a code required by the XSD"))
}

fn truncate(s: &str, max: usize) -> String {
    s.trim().chars().take(max).collect()
}

fn nazione(tables: &Tables, v: &Value, event: &'static str, ptr: &str) -> Result<Option<String>, BuildError> {
    let Some(istat) = opt_str(v, event, ptr)? else { return Ok(None) };
    tables.nazioni.siuss(istat).map(|s| Some(s.to_string())).ok_or_else(|| BuildError::Unmapped {
        event,
        pointer: format!("/data{ptr}"),
        table: "nazioni-istat-siuss",
        code: istat.to_string(),
    })
}

fn indirizzo(tables: &Tables, v: &Value, event: &'static str, base: &str) -> Result<Indirizzo, BuildError> {
    let codice_nazione = nazione(tables, v, event, &format!("{base}/nazione"))?
        .ok_or_else(|| missing(event, &format!("{base}/nazione"), "CodiceNazione"))?;
    let comune_ptr = format!("{base}/comune");
    let codice_comune = opt_str(v, event, &comune_ptr)?.map(str::to_string);
    let codice_regione = match &codice_comune {
        Some(c) => {
            Some(tables.regioni.of_comune(c).map(str::to_string).ok_or_else(|| BuildError::Unmapped {
                event,
                pointer: format!("/data{comune_ptr}"),
                table: "province-regioni",
                code: c.chars().take(3).collect(),
            })?)
        }
        None => None,
    };
    if codice_nazione == "380" && codice_comune.is_none() {
        return Err(missing(event, &comune_ptr, "CodiceComune for an Italian address"));
    }
    Ok(Indirizzo { codice_regione, codice_comune, codice_nazione })
}

fn same_person(persona: &Value, other: &Value, event: &'static str, ptr: &str) -> Result<(), BuildError> {
    let p = persona.pointer("/pseudonimo").and_then(Value::as_str);
    let o = other.pointer(ptr).and_then(Value::as_str);
    match (p, o) {
        (Some(p), Some(o)) if p != o => Err(BuildError::Mismatch { event, pointer: format!("/data{ptr}") }),
        _ => Ok(()),
    }
}

/// [`from_events_with`] with the compiled-in tables.
pub fn from_events(
    ente: &EnteInfo,
    persona: &Value,
    prestazione: &Value,
    valutazione: Option<&Value>,
    op: TipoOperazione,
) -> Result<PsPsaSina, BuildError> {
    from_events_with(&Tables::builtin(), ente, persona, prestazione, valutazione, op)
}

/// A `PS_PSA_SINA` flusso with one Beneficiario and one PrestazioniSociali (the WaaS case), from
/// the `data` of `persona.registrata.v1`, `prestazione.erogata.v1` and, for the SINA block,
/// `valutazione.registrata.v1`. `IdentificazioneFlusso@Nome` is set to `idPrestazione` (first 50
/// characters): replace it with the `id_flusso` ([`PsPsaSina::with_nome`]). Run [`crate::check`]
/// on the result before publishing.
pub fn from_events_with(
    tables: &Tables,
    ente: &EnteInfo,
    persona: &Value,
    prestazione: &Value,
    valutazione: Option<&Value>,
    op: TipoOperazione,
) -> Result<PsPsaSina, BuildError> {
    same_person(persona, prestazione, PRESTAZIONE, "/beneficiario/pseudonimo")?;
    if let Some(v) = valutazione {
        same_person(persona, v, VALUTAZIONE, "/assistito/pseudonimo")?;
    }

    // Beneficiario
    let cf = match opt_str(persona, PERSONA, "/codiceFiscale")? {
        Some(cf) => cf,
        None => {
            req_str(prestazione, PRESTAZIONE, "/beneficiario/codiceFiscale", "Beneficiario@CodiceFiscale")?
        }
    };
    if let Some(other) = opt_str(prestazione, PRESTAZIONE, "/beneficiario/codiceFiscale")? {
        if other != cf {
            return Err(BuildError::Mismatch {
                event: PRESTAZIONE,
                pointer: "/data/beneficiario/codiceFiscale".into(),
            });
        }
    }
    let nascita = opt_date(persona, PERSONA, "/dataNascita")?
        .ok_or_else(|| missing(PERSONA, "/dataNascita", "Anagrafica@AnnoNascita"))?;
    let anagrafica = Anagrafica {
        cognome: truncate(req_str(persona, PERSONA, "/cognome", "Anagrafica@Cognome")?, 36),
        nome: truncate(req_str(persona, PERSONA, "/nome", "Anagrafica@Nome")?, 36),
        anno_nascita: u16::try_from(nascita.year())
            .map_err(|_| invalid(PERSONA, "/dataNascita", "year out of range"))?,
        luogo_nascita: req_str(persona, PERSONA, "/luogoNascita", "Anagrafica@LuogoNascita")?.to_string(),
        genere: req_code(persona, PERSONA, "/genere", Genere::from_code)?,
        codice_cittadinanza: nazione(tables, persona, PERSONA, "/cittadinanza")?
            .ok_or_else(|| missing(PERSONA, "/cittadinanza", "Anagrafica@CodiceCittadinanza"))?,
        codice_seconda_cittadinanza: nazione(tables, persona, PERSONA, "/secondaCittadinanza")?,
    };
    if persona.pointer("/residenza").is_none() {
        return Err(missing(PERSONA, "/residenza", "Indirizzo"));
    }
    let mut indirizzi = vec![indirizzo(tables, persona, PERSONA, "/residenza")?];
    if persona.pointer("/domicilio").is_some() {
        let dom = indirizzo(tables, persona, PERSONA, "/domicilio")?;
        if dom != indirizzi[0] {
            indirizzi.push(dom);
        }
    }

    // PrestazioniSociali
    let ev = prestazione;
    let codice = req_str(ev, PRESTAZIONE, "/codicePrestazione", "CodicePrestazione")?;
    let voce = tables.prestazioni.get(codice);
    let denominazione = match voce {
        Some(v) => v.denominazione.clone(),
        None => req_str(ev, PRESTAZIONE, "/denominazione", "DenominazionePrestazione")?.trim().to_string(),
    };
    if !(10..=200).contains(&denominazione.chars().count()) {
        return Err(invalid(
            PRESTAZIONE,
            "/denominazione",
            format!("DenominazionePrestazione must be 10-200 characters and {codice:?} is not in the prestazioni table"),
        ));
    }
    let id_progetto = opt_str(ev, PRESTAZIONE, "/idProgetto")?;
    let (protocollo_ptr, protocollo) = match id_progetto {
        Some(p) => ("/idProgetto", p),
        None => ("/idPrestazione", req_str(ev, PRESTAZIONE, "/idPrestazione", "ProtocolloDomanda")?),
    };
    if protocollo.chars().count() > 32 {
        return Err(invalid(
            PRESTAZIONE,
            protocollo_ptr,
            "longer than the 32 characters of ProtocolloDomanda",
        ));
    }
    let carattere = req_code(ev, PRESTAZIONE, "/carattere", CaratterePrestazione::from_code)?;
    let importo = opt_importo(ev, PRESTAZIONE, "/importo")?
        .ok_or_else(|| missing(PRESTAZIONE, "/importo", "the amount"))?;
    let mut p = PrestazioniSociali::new(
        voce.and_then(|v| v.presenza_prova_mezzi).unwrap_or(ente.presenza_prova_mezzi),
        codice,
        denominazione,
        protocollo,
        if id_progetto.is_some() { PresaCarico::Si } else { PresaCarico::No },
    );
    p.tipo_operazione = Some(op);
    p.carattere_prestazione = Some(carattere);
    match carattere {
        CaratterePrestazione::Periodico => {
            let inizio = opt_date(ev, PRESTAZIONE, "/dataInizio")?
                .ok_or_else(|| missing(PRESTAZIONE, "/dataInizio", "DataInizioPrestazione (carattere 1)"))?;
            let fine = opt_date(ev, PRESTAZIONE, "/dataFine")?;
            p.data_inizio_prestazione = Some(inizio);
            p.data_fine_prestazione = fine;
            p.importo_mensile = Some(importo);
            p.periodo_erogazione = if ev.pointer("/mese").is_some() {
                Some(1)
            } else {
                fine.filter(|f| f.year() == inizio.year() && *f >= inizio)
                    .map(|f| u8::from(f.month()) - u8::from(inizio.month()) + 1)
            };
        }
        CaratterePrestazione::Occasionale => {
            p.data_erogazione_prestazione =
                Some(opt_date(ev, PRESTAZIONE, "/dataErogazione")?.ok_or_else(|| {
                    missing(PRESTAZIONE, "/dataErogazione", "DataErogazionePrestazione (carattere 2)")
                })?);
            p.importo_prestazione = Some(importo);
        }
    }
    p.importo_quota_ente = opt_importo(ev, PRESTAZIONE, "/quotaEnte")?;
    p.importo_quota_utente = opt_importo(ev, PRESTAZIONE, "/quotaUtente")?;
    p.importo_quota_ssn = opt_importo(ev, PRESTAZIONE, "/quotaSSN")?;
    p.ore_servizio_mensile = opt_str(ev, PRESTAZIONE, "/oreServizioMensile")?
        .map(|s| s.parse::<Ore>().map_err(|_| invalid(PRESTAZIONE, "/oreServizioMensile", "not a decimal")))
        .transpose()?;
    p.area_utenza = code(ev, PRESTAZIONE, "/areaUtenza", AreaUtenza::from_code)?;
    p.sina = match valutazione {
        Some(v) if v.pointer("/strumenti/sina").is_some() => Some(sina(v)?),
        _ => None,
    };

    let nome = truncate(opt_str(ev, PRESTAZIONE, "/idPrestazione")?.unwrap_or_default(), 50);
    Ok(PsPsaSina {
        identificazione: ente.header(nome),
        beneficiari: vec![Beneficiario {
            codice_fiscale: cf.to_string(),
            anagrafica,
            indirizzi,
            prestazioni: vec![p],
        }],
    })
}

fn sina(v: &Value) -> Result<Sina, BuildError> {
    let e = VALUTAZIONE;
    let b = "/strumenti/sina";
    let p = |k: &str| format!("{b}/{k}");
    let list = |k: &str| -> Result<Vec<&str>, BuildError> {
        match v.pointer(&p(k)) {
            None | Some(Value::Null) => Ok(Vec::new()),
            Some(Value::Array(a)) => a
                .iter()
                .enumerate()
                .map(|(i, x)| {
                    x.as_str().ok_or_else(|| invalid(e, &format!("{}/{i}", p(k)), "expected a string"))
                })
                .collect(),
            Some(_) => Err(invalid(e, &p(k), "expected an array")),
        }
    };
    Ok(Sina {
        necessita_interventi_sociali: list("necessitaInterventiSociali")?
            .into_iter()
            .map(str::to_string)
            .collect(),
        invalidita_civile: list("invaliditaCivile")?
            .into_iter()
            .enumerate()
            .map(|(i, c)| {
                InvCiv::from_code(c).ok_or_else(|| {
                    invalid(e, &format!("{}/{i}", p("invaliditaCivile")), "code not allowed by the XSD")
                })
            })
            .collect::<Result<_, _>>()?,
        mobilita: req_code(v, e, &p("mobilita"), Mobilita::from_code)?,
        attivita_vita_quotidiana: req_code(
            v,
            e,
            &p("attivitaVitaQuotidiana"),
            AttivitaVitaQuotidiana::from_code,
        )?,
        disturbi_area_cognitiva: code(v, e, &p("disturbiAreaCognitiva"), DisturbiAreaCognitiva::from_code)?,
        disturbi_comportamentali: req_code(
            v,
            e,
            &p("disturbiComportamentali"),
            DisturbiComportamentali::from_code,
        )?,
        necessita_cure_sanitarie: code(
            v,
            e,
            &p("necessitaCureSanitarie"),
            NecessitaCureSanitarie::from_code,
        )?,
        area_reddituale: req_code(v, e, &p("areaReddituale"), AreaReddituale::from_code)?,
        area_supporto: req_code(v, e, &p("areaSupporto"), AreaSupporto::from_code)?,
        fonte_derivazione_valutazione: req_code(
            v,
            e,
            &p("fonteValutazione"),
            FonteDerivazioneValutazione::from_code,
        )?,
        strumento_valutazione: req_code(v, e, &p("strumentoValutazione"), StrumentoValutazione::from_code)?,
        fonte_derivazione_invalidita: code(
            v,
            e,
            &p("fonteInvalidita"),
            FonteDerivazioneInvalidita::from_code,
        )?,
    })
}

impl PsPsaSina {
    /// The same flusso with `IdentificazioneFlusso@Nome` set (use the `id_flusso`).
    pub fn with_nome(mut self, nome: impl Into<String>) -> Self {
        self.identificazione.nome = nome.into();
        self
    }

    /// The same flusso with every PrestazioniSociali's `TipoOperazione` set to `op`.
    pub fn with_operazione(mut self, op: TipoOperazione) -> Self {
        for b in &mut self.beneficiari {
            for p in &mut b.prestazioni {
                p.tipo_operazione = Some(op);
            }
        }
        self
    }
}

/// The cancellation of a published flusso: the same content with `TipoOperazione` `C`. Give it
/// its own `id_flusso`.
pub fn cancellation(published: &PsPsaSina) -> PsPsaSina {
    published.clone().with_operazione(TipoOperazione::C)
}

/// A correction is a cancellation of what was published followed by a new insertion: returns
/// `[C flusso of published, I flusso of corrected]`, to publish in this order, each with its own
/// `id_flusso` (the C one with the lower progressive).
pub fn correction(published: &PsPsaSina, corrected: PsPsaSina) -> [PsPsaSina; 2] {
    [cancellation(published), corrected.with_operazione(TipoOperazione::I)]
}

/// The events a SINBA record is built from.
#[derive(Debug, Clone)]
pub struct SinbaEvents<'a> {
    /// `data` of the minor's `persona.registrata.v1`.
    pub persona: &'a Value,
    /// `data` of the minor's `prestazione.erogata.v1` events (codes are deduplicated).
    pub prestazioni: &'a [&'a Value],
    /// `data` of the minor's `nucleo.aggiornato.v1`, used when `famiglia` is empty.
    pub nucleo: Option<&'a Value>,
    /// `ComposizioneFamiglia` as the social worker recorded it; when empty it is derived from
    /// `nucleo` (see [`famiglia_from_nucleo`]).
    pub famiglia: Vec<ComposizioneFamiglia>,
    /// Reference date for the age band (`FasciaEtaBeneficiario`), e.g. the flusso date.
    pub riferimento: Date,
}

/// One SINBA record for a minor. `IDBeneficiario` = [`sinba_id`] of the codice fiscale (or of
/// `pseudonimo:<pseudonimo>` when the minor has none); the codice fiscale is never copied.
pub fn sinba_record_from_events(
    tables: &Tables,
    secret: &[u8],
    ev: &SinbaEvents<'_>,
    dati: DatiSinba,
) -> Result<SinbaRecord, BuildError> {
    let persona = ev.persona;
    let pseudonimo = req_str(persona, PERSONA, "/pseudonimo", "a stable pseudonym")?;
    let id_beneficiario = match opt_str(persona, PERSONA, "/codiceFiscale")? {
        Some(cf) => sinba_id(secret, cf),
        None => sinba_id(secret, &format!("pseudonimo:{pseudonimo}")),
    };
    let nascita = opt_date(persona, PERSONA, "/dataNascita")?
        .ok_or_else(|| missing(PERSONA, "/dataNascita", "AnnoNascita and FasciaEtaBeneficiario"))?;
    let fascia = fascia_eta(nascita, ev.riferimento)
        .ok_or_else(|| invalid(PERSONA, "/dataNascita", "not a minor at the reference date"))?;
    let residenza = indirizzo(tables, persona, PERSONA, "/residenza")?;

    let mut prestazioni: Vec<String> = Vec::new();
    for (i, p) in ev.prestazioni.iter().enumerate() {
        same_person(persona, p, PRESTAZIONE, "/beneficiario/pseudonimo")?;
        let c = req_str(p, PRESTAZIONE, "/codicePrestazione", "Prestazioni/CodicePrestazione")
            .map_err(|_| missing(PRESTAZIONE, &format!("[{i}]/codicePrestazione"), "CodicePrestazione"))?;
        if !prestazioni.iter().any(|x| x == c) {
            prestazioni.push(c.to_string());
        }
    }
    if prestazioni.is_empty() {
        return Err(missing(PRESTAZIONE, "/codicePrestazione", "at least one prestazione for the minor"));
    }
    let famiglia = if ev.famiglia.is_empty() {
        let n = ev.nucleo.ok_or_else(|| missing(NUCLEO, "/componenti", "ComposizioneFamiglia"))?;
        famiglia_from_nucleo(n, pseudonimo)?
    } else {
        ev.famiglia.clone()
    };
    Ok(SinbaRecord {
        prestazioni,
        famiglia,
        id_beneficiario,
        fascia_eta_beneficiario: fascia,
        anno_nascita: u16::try_from(nascita.year()).map_err(|_| invalid(PERSONA, "/dataNascita", "year"))?,
        codice_regione_residenza: residenza.codice_regione,
        codice_nazione_residenza: residenza.codice_nazione,
        dati,
    })
}

/// A `SINBA` flusso with one record, built with the compiled-in tables.
/// `IdentificazioneFlusso@Nome` is empty: set it to the `id_flusso`.
pub fn sinba_from_events(
    ente: &EnteInfo,
    secret: &[u8],
    ev: &SinbaEvents<'_>,
    dati: DatiSinba,
) -> Result<Sinba, BuildError> {
    let r = sinba_record_from_events(&Tables::builtin(), secret, ev, dati)?;
    Ok(Sinba { identificazione: ente.header(""), records: vec![r] })
}

/// Age band at `at`: `[0,3)` → 1 ... `[15,18)` → 6; `None` from 18 on or before birth.
pub fn fascia_eta(nascita: Date, at: Date) -> Option<FasciaEtaBeneficiario> {
    if at < nascita {
        return None;
    }
    let mut age = at.year() - nascita.year();
    if (u8::from(at.month()), at.day()) < (u8::from(nascita.month()), nascita.day()) {
        age -= 1;
    }
    use FasciaEtaBeneficiario::*;
    Some(match age {
        0..=2 => Da0a3,
        3..=5 => Da3a6,
        6..=8 => Da6a9,
        9..=11 => Da9a12,
        12..=14 => Da12a15,
        15..=17 => Da15a18,
        _ => return None,
    })
}

/// Derives `ComposizioneFamiglia` from an ANPR household (`nucleo.aggiornato.v1`), for a minor
/// recorded as child (`legame` 3) of the intestatario: intestatario and spouse (1, 2) are the
/// parents — mother or father from the codice fiscale's day of birth (> 40 = female) — other
/// children (3) brothers and sisters, the intestatario's parents (6) grandparents, a partner (23)
/// the parent's partner, anyone else another cohabitant. A heuristic: when the minor is not a
/// child of the intestatario, or a parent has no codice fiscale, it fails and the caller must give
/// the composition explicitly.
pub fn famiglia_from_nucleo(
    nucleo: &Value,
    pseudonimo: &str,
) -> Result<Vec<ComposizioneFamiglia>, BuildError> {
    let comps = nucleo
        .pointer("/componenti")
        .and_then(Value::as_array)
        .ok_or_else(|| missing(NUCLEO, "/componenti", "ComposizioneFamiglia"))?;
    let me = comps
        .iter()
        .position(|c| c.pointer("/pseudonimo").and_then(Value::as_str) == Some(pseudonimo))
        .ok_or_else(|| invalid(NUCLEO, "/componenti", "the minor is not a member of this nucleo"))?;
    if comps[me].pointer("/legame").and_then(Value::as_str) != Some("3") {
        return Err(invalid(
            NUCLEO,
            &format!("/componenti/{me}/legame"),
            "the minor is not a child of the intestatario: give ComposizioneFamiglia explicitly",
        ));
    }
    let mut out = Vec::new();
    for (i, c) in comps.iter().enumerate() {
        if i == me {
            continue;
        }
        let legame = c.pointer("/legame").and_then(Value::as_str).unwrap_or("");
        let v = match legame {
            "1" | "2" => {
                let cf = c.pointer("/codiceFiscale").and_then(Value::as_str).ok_or_else(|| {
                    invalid(
                        NUCLEO,
                        &format!("/componenti/{i}/codiceFiscale"),
                        "a parent's sex is read from the codice fiscale: give ComposizioneFamiglia explicitly",
                    )
                })?;
                match cf.get(9..11).and_then(|d| d.parse::<u8>().ok()) {
                    Some(d) if d > 40 => ComposizioneFamiglia::Madre,
                    Some(_) => ComposizioneFamiglia::Padre,
                    None => {
                        return Err(invalid(
                            NUCLEO,
                            &format!("/componenti/{i}/codiceFiscale"),
                            "codice fiscale with omocodia in the day digits: give ComposizioneFamiglia explicitly",
                        ))
                    }
                }
            }
            "3" => ComposizioneFamiglia::FratelliSorelle,
            "6" => ComposizioneFamiglia::Nonno,
            "23" => ComposizioneFamiglia::CompagnoMadrePadre,
            _ => ComposizioneFamiglia::AltriConviventi,
        };
        if !out.contains(&v) {
            out.push(v);
        }
    }
    if out.is_empty() {
        return Err(invalid(
            NUCLEO,
            "/componenti",
            "the minor lives alone: give ComposizioneFamiglia explicitly",
        ));
    }
    Ok(out)
}
