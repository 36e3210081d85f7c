//! XML serialization with quick-xml: a streaming writer per flow type, and whole-flow helpers.
//!
//! Elements and attributes are written in XSD order, UTF-8, namespace `http://inps.it/Casellario`
//! as the default namespace. Writing does not check the rules: run [`crate::check`] first.

use std::io::Write;

use base64::Engine as _;
use quick_xml::events::{BytesDecl, BytesEnd, BytesStart, BytesText, Event};
use quick_xml::Writer;

use crate::model::*;
use crate::sinba::*;
use crate::values::xs_date;

/// A whole flow of either type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Flusso {
    /// `PS_PSA_SINA`.
    PsPsaSina(PsPsaSina),
    /// `SINBA`.
    Sinba(Sinba),
}

impl From<PsPsaSina> for Flusso {
    fn from(f: PsPsaSina) -> Self {
        Flusso::PsPsaSina(f)
    }
}

impl From<Sinba> for Flusso {
    fn from(f: Sinba) -> Self {
        Flusso::Sinba(f)
    }
}

/// Writing a flow failed.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// The underlying writer failed.
    #[error("writing the flusso failed: {0}")]
    Io(#[from] std::io::Error),
    /// `finish` was called with no record written: the XSD requires at least one.
    #[error("the flusso has no {0}: the XSD requires at least one")]
    Empty(&'static str),
}

type Xml<W> = Writer<W>;

fn start<W: Write>(xml: &mut Xml<W>, el: BytesStart<'_>) -> std::io::Result<()> {
    xml.write_event(Event::Start(el))
}

fn end<W: Write>(xml: &mut Xml<W>, name: &str) -> std::io::Result<()> {
    xml.write_event(Event::End(BytesEnd::new(name)))
}

fn empty<W: Write>(xml: &mut Xml<W>, el: BytesStart<'_>) -> std::io::Result<()> {
    xml.write_event(Event::Empty(el))
}

fn text_el<W: Write>(xml: &mut Xml<W>, name: &str, text: &str) -> std::io::Result<()> {
    start(xml, BytesStart::new(name))?;
    xml.write_event(Event::Text(BytesText::new(text)))?;
    end(xml, name)
}

/// Attribute helpers: required and optional, any `Display` value.
trait Attrs {
    fn req(&mut self, name: &str, v: impl std::fmt::Display);
    fn opt<T: std::fmt::Display>(&mut self, name: &str, v: Option<T>);
}

impl Attrs for BytesStart<'_> {
    fn req(&mut self, name: &str, v: impl std::fmt::Display) {
        self.push_attribute((name, v.to_string().as_str()));
    }
    fn opt<T: std::fmt::Display>(&mut self, name: &str, v: Option<T>) {
        if let Some(v) = v {
            self.req(name, v);
        }
    }
}

fn write_header<W: Write>(xml: &mut Xml<W>, h: &IdentificazioneFlusso) -> std::io::Result<()> {
    xml.write_event(Event::Decl(BytesDecl::new("1.0", Some("UTF-8"), None)))?;
    let mut root = BytesStart::new("Flusso");
    root.req("xmlns", NAMESPACE);
    start(xml, root)?;
    let mut idf = BytesStart::new("IdentificazioneFlusso");
    idf.req("Nome", &h.nome);
    start(xml, idf)?;
    let e = &h.ente;
    let mut ente = BytesStart::new("Ente");
    ente.req("Codice", &e.codice);
    ente.opt("Denominazione", e.denominazione.as_deref());
    ente.req("Indirizzo", &e.indirizzo);
    ente.req("CFOperatore", &e.cf_operatore);
    empty(xml, ente)?;
    end(xml, "IdentificazioneFlusso")
}

fn write_beneficiario<W: Write>(xml: &mut Xml<W>, b: &Beneficiario) -> std::io::Result<()> {
    let mut el = BytesStart::new("Beneficiario");
    el.req("CodiceFiscale", &b.codice_fiscale);
    start(xml, el)?;

    let a = &b.anagrafica;
    let mut an = BytesStart::new("Anagrafica");
    an.req("Cognome", &a.cognome);
    an.req("Nome", &a.nome);
    an.req("AnnoNascita", format_args!("{:04}", a.anno_nascita));
    an.req("LuogoNascita", &a.luogo_nascita);
    an.req("Genere", a.genere);
    an.req("CodiceCittadinanza", &a.codice_cittadinanza);
    an.opt("CodiceSecondaCittadinanza", a.codice_seconda_cittadinanza.as_deref());
    empty(xml, an)?;

    for i in &b.indirizzi {
        let mut el = BytesStart::new("Indirizzo");
        el.opt("CodiceRegione", i.codice_regione.as_deref());
        el.opt("CodiceComune", i.codice_comune.as_deref());
        el.req("CodiceNazione", &i.codice_nazione);
        empty(xml, el)?;
    }

    for p in &b.prestazioni {
        write_prestazione(xml, p)?;
    }
    end(xml, "Beneficiario")
}

fn write_prestazione<W: Write>(xml: &mut Xml<W>, p: &PrestazioniSociali) -> std::io::Result<()> {
    let mut el = BytesStart::new("PrestazioniSociali");
    el.opt("TipoOperazione", p.tipo_operazione);
    el.req("PresenzaProvaMezzi", p.presenza_prova_mezzi);
    el.opt("CaratterePrestazione", p.carattere_prestazione);
    el.opt("NumeroProtocolloDSU", p.numero_protocollo_dsu.as_deref());
    el.opt("AnnoProtocolloDSU", p.anno_protocollo_dsu.map(|y| format!("{y:04}")));
    el.opt("DataDSU", p.data_dsu.map(xs_date));
    el.req("CodicePrestazione", &p.codice_prestazione);
    el.req("DenominazionePrestazione", &p.denominazione_prestazione);
    el.req("ProtocolloDomanda", &p.protocollo_domanda);
    el.opt("DataEvento", p.data_evento.map(xs_date));
    el.opt("DataInizioPrestazione", p.data_inizio_prestazione.map(xs_date));
    el.opt("DataFinePrestazione", p.data_fine_prestazione.map(xs_date));
    el.opt("DataErogazionePrestazione", p.data_erogazione_prestazione.map(xs_date));
    el.opt("ImportoPrestazione", p.importo_prestazione);
    el.opt("PeriodoErogazione", p.periodo_erogazione);
    el.opt("ImportoMensile", p.importo_mensile);
    el.opt("ImportoQuotaEnte", p.importo_quota_ente);
    el.opt("ImportoQuotaUtente", p.importo_quota_utente);
    el.opt("ImportoQuotaSSN", p.importo_quota_ssn);
    el.opt("ImportoQuotaRichiesta", p.importo_quota_richiesta);
    el.opt("ImportoSogliaISEE", p.importo_soglia_isee);
    el.opt("OreServizioMensile", p.ore_servizio_mensile);
    el.req("PresaCarico", p.presa_carico);
    el.opt("AreaUtenza", p.area_utenza);

    let Some(s) = &p.sina else {
        return empty(xml, el);
    };
    start(xml, el)?;
    let mut sel = BytesStart::new("SINA");
    sel.req("Mobilita", s.mobilita);
    sel.req("AttivitaVitaQuotidiana", s.attivita_vita_quotidiana);
    sel.opt("DisturbiAreaCognitiva", s.disturbi_area_cognitiva);
    sel.req("DisturbiComportamentali", s.disturbi_comportamentali);
    sel.opt("NecessitaCureSanitarie", s.necessita_cure_sanitarie);
    sel.req("AreaReddituale", s.area_reddituale);
    sel.req("AreaSupporto", s.area_supporto);
    sel.req("FonteDerivazioneValutazione", s.fonte_derivazione_valutazione);
    sel.req("StrumentoValutazione", s.strumento_valutazione);
    sel.opt("FonteDerivazioneInvalidita", s.fonte_derivazione_invalidita);
    if s.necessita_interventi_sociali.is_empty() && s.invalidita_civile.is_empty() {
        empty(xml, sel)?;
    } else {
        start(xml, sel)?;
        if !s.necessita_interventi_sociali.is_empty() {
            start(xml, BytesStart::new("NecessitaInterventiSociali"))?;
            for c in &s.necessita_interventi_sociali {
                text_el(xml, "CodicePrestazione", c)?;
            }
            end(xml, "NecessitaInterventiSociali")?;
        }
        if !s.invalidita_civile.is_empty() {
            start(xml, BytesStart::new("InvaliditaCivile"))?;
            for c in &s.invalidita_civile {
                text_el(xml, "InvCiv", c.code())?;
            }
            end(xml, "InvaliditaCivile")?;
        }
        end(xml, "SINA")?;
    }
    end(xml, "PrestazioniSociali")
}

fn write_sinba_record<W: Write>(xml: &mut Xml<W>, r: &SinbaRecord) -> std::io::Result<()> {
    let d = &r.dati;
    let mut el = BytesStart::new("SINBA");
    el.req("IDBeneficiario", &r.id_beneficiario);
    el.req("MinoreStranieroNoAcc", d.minore_straniero_no_acc);
    el.req("CondizioneMinore", d.condizione_minore);
    el.req("LuogoVita", d.luogo_vita);
    el.req("ScuolaFrequentata", d.scuola_frequentata);
    el.req("CondizioneLavoro", d.condizione_lavoro);
    el.req("Disabilita", d.disabilita);
    el.opt("TipoDisabilita", d.tipo_disabilita);
    el.opt("InvCivCertificazioni", d.inv_civ_certificazioni);
    el.opt("CodiceCittadinanzaPadre", d.codice_cittadinanza_padre.as_deref());
    el.opt("CodiceCittadinanzaMadre", d.codice_cittadinanza_madre.as_deref());
    el.opt("CodiceRegioneResidenzaPadre", d.codice_regione_residenza_padre.as_deref());
    el.opt("CodiceRegioneResidenzaMadre", d.codice_regione_residenza_madre.as_deref());
    el.opt("TitoloStudioPadre", d.titolo_studio_padre);
    el.opt("TitoloStudioMadre", d.titolo_studio_madre);
    el.opt("OccupazionePadre", d.occupazione_padre);
    el.opt("OccupazioneMadre", d.occupazione_madre);
    el.req("DataPrimaSegnalazione", d.data_prima_segnalazione);
    el.req("FonteSegnalazione", d.fonte_segnalazione);
    el.req("ValutazioneMinore", d.valutazione_minore);
    el.req("ValutazioneFamigliaMinore", d.valutazione_famiglia_minore);
    el.req("SegnalazioneAutoritaGiudiziaria", d.segnalazione_autorita_giudiziaria);
    el.opt("DataSegnalazione", d.data_segnalazione);
    el.req("ProvvedimentoGiudiziario", d.provvedimento_giudiziario);
    el.opt("DataProvvedimentoGiudiziario", d.data_provvedimento_giudiziario);
    el.opt("AutoritaProvvedimento", d.autorita_provvedimento);
    el.opt("PotestaTutela", d.potesta_tutela);
    el.opt("TipoProvvedimentoGiudiziario", d.tipo_provvedimento_giudiziario);
    el.opt("FormaInterventoAffido", d.forma_intervento_affido);
    el.opt("TipoInterventoAffido", d.tipo_intervento_affido);
    el.opt("DurataAffido", d.durata_affido);
    el.opt("CarattereAffido", d.carattere_affido);
    el.opt("EsitoAffido", d.esito_affido);
    el.opt("CarattereInserimentoResidenziale", d.carattere_inserimento_residenziale);
    el.opt("FormaInserimentoResidenziale", d.forma_inserimento_residenziale);
    el.opt("TipoInserimentoResidenziale", d.tipo_inserimento_residenziale);
    el.opt("EsitoInserimentoStruttura", d.esito_inserimento_struttura);
    el.opt("MotivazioneChiusuraCarico", d.motivazione_chiusura_carico);
    el.opt("SituazioneChiusuraCarico", d.situazione_chiusura_carico);
    el.opt("CollaborazioniInterventi", d.collaborazioni_interventi);
    el.opt("NumeroComponentiISEE", d.numero_componenti_isee);
    el.req("FasciaEtaBeneficiario", r.fascia_eta_beneficiario);
    el.opt("FasciaISEEBeneficiario", d.fascia_isee_beneficiario);
    el.req("AnnoNascita", format_args!("{:04}", r.anno_nascita));
    el.opt("CodiceRegioneResidenza", r.codice_regione_residenza.as_deref());
    el.req("CodiceNazioneResidenza", &r.codice_nazione_residenza);
    start(xml, el)?;
    start(xml, BytesStart::new("Prestazioni"))?;
    for c in &r.prestazioni {
        text_el(xml, "CodicePrestazione", c)?;
    }
    end(xml, "Prestazioni")?;
    start(xml, BytesStart::new("Famiglia"))?;
    for c in &r.famiglia {
        text_el(xml, "ComposizioneFamiglia", c.code())?;
    }
    end(xml, "Famiglia")?;
    end(xml, "SINBA")
}

/// Streaming writer of a `PS_PSA_SINA` flow with many beneficiaries (web-upload channel): header
/// first, then one [`Beneficiario`] at a time, then [`finish`](Self::finish). Memory stays flat:
/// nothing is buffered beyond what the underlying writer buffers (wrap files in a `BufWriter`).
pub struct FlussoWriter<W: Write> {
    xml: Xml<W>,
    written: usize,
}

impl<W: Write> FlussoWriter<W> {
    /// Writes the XML declaration, the root and `IdentificazioneFlusso`.
    pub fn new(out: W, header: &IdentificazioneFlusso) -> Result<Self, WriteError> {
        let mut xml = Writer::new_with_indent(out, b' ', 1);
        write_header(&mut xml, header)?;
        Ok(FlussoWriter { xml, written: 0 })
    }

    /// Writes one `Beneficiario` with its prestazioni.
    pub fn write_beneficiario(&mut self, b: &Beneficiario) -> Result<(), WriteError> {
        write_beneficiario(&mut self.xml, b)?;
        self.written += 1;
        Ok(())
    }

    /// Number of beneficiaries written so far.
    pub fn written(&self) -> usize {
        self.written
    }

    /// Closes the root and returns the writer. Fails if no beneficiary was written.
    pub fn finish(mut self) -> Result<W, WriteError> {
        if self.written == 0 {
            return Err(WriteError::Empty("Beneficiario"));
        }
        end(&mut self.xml, "Flusso")?;
        let mut w = self.xml.into_inner();
        w.flush()?;
        Ok(w)
    }
}

/// Streaming writer of a `SINBA` flow, one minor ([`SinbaRecord`]) at a time.
pub struct SinbaWriter<W: Write> {
    xml: Xml<W>,
    written: usize,
}

impl<W: Write> SinbaWriter<W> {
    /// Writes the XML declaration, the root and `IdentificazioneFlusso`.
    pub fn new(out: W, header: &IdentificazioneFlusso) -> Result<Self, WriteError> {
        let mut xml = Writer::new_with_indent(out, b' ', 1);
        write_header(&mut xml, header)?;
        Ok(SinbaWriter { xml, written: 0 })
    }

    /// Writes one `SINBA` element.
    pub fn write_record(&mut self, r: &SinbaRecord) -> Result<(), WriteError> {
        write_sinba_record(&mut self.xml, r)?;
        self.written += 1;
        Ok(())
    }

    /// Number of records written so far.
    pub fn written(&self) -> usize {
        self.written
    }

    /// Closes the root and returns the writer. Fails if no record was written.
    pub fn finish(mut self) -> Result<W, WriteError> {
        if self.written == 0 {
            return Err(WriteError::Empty("SINBA"));
        }
        end(&mut self.xml, "Flusso")?;
        let mut w = self.xml.into_inner();
        w.flush()?;
        Ok(w)
    }
}

fn write_whole<W: Write>(xml: &mut Xml<W>, f: &Flusso) -> std::io::Result<()> {
    match f {
        Flusso::PsPsaSina(f) => {
            write_header(xml, &f.identificazione)?;
            for b in &f.beneficiari {
                write_beneficiario(xml, b)?;
            }
        }
        Flusso::Sinba(f) => {
            write_header(xml, &f.identificazione)?;
            for r in &f.records {
                write_sinba_record(xml, r)?;
            }
        }
    }
    end(xml, "Flusso")
}

/// The whole flow as UTF-8 XML (the WaaS case: one Beneficiario, one PrestazioniSociali).
pub fn to_xml(f: &Flusso) -> Vec<u8> {
    let mut xml = Writer::new_with_indent(Vec::new(), b' ', 1);
    // Writing into a Vec<u8> cannot fail.
    let _ = write_whole(&mut xml, f);
    xml.into_inner()
}

/// The whole flow as the WaaS `flusso` field: standard base64 of [`to_xml`].
pub fn to_base64(f: &Flusso) -> String {
    base64::engine::general_purpose::STANDARD.encode(to_xml(f))
}
