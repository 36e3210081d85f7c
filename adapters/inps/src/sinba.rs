//! Typed model of the `SINBA` flow (`SINBA.xsd`): minors and families, pseudonymous.
//!
//! There is no codice fiscale anywhere in this model: the minor is `IDBeneficiario`, a pseudonym
//! ([`crate::sinba_id`]). There is no `TipoOperazione` either (how to cancel a SINBA record is
//! unconfirmed).

use crate::codes::*;
use crate::model::IdentificazioneFlusso;
use crate::values::MeseAnno;

/// A `SINBA` flow: root `Flusso`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sinba {
    /// `IdentificazioneFlusso`.
    pub identificazione: IdentificazioneFlusso,
    /// `SINBA`, 1..n.
    pub records: Vec<SinbaRecord>,
}

/// `SinbaType`: one minor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SinbaRecord {
    /// `Prestazioni/CodicePrestazione`, 1..n, each 5–10 characters.
    pub prestazioni: Vec<String>,
    /// `Famiglia/ComposizioneFamiglia`, 1..n.
    pub famiglia: Vec<ComposizioneFamiglia>,
    /// `@IDBeneficiario`, 1–20 characters, a pseudonym: never a codice fiscale.
    pub id_beneficiario: String,
    /// `@FasciaEtaBeneficiario`.
    pub fascia_eta_beneficiario: FasciaEtaBeneficiario,
    /// `@AnnoNascita`, 4 digits.
    pub anno_nascita: u16,
    /// `@CodiceRegioneResidenza`, 2 digits.
    pub codice_regione_residenza: Option<String>,
    /// `@CodiceNazioneResidenza`, 3 digits, SIUSS coding (380 = Italy).
    pub codice_nazione_residenza: String,
    /// The social-services assessment: everything the interchange events do not carry.
    pub dati: DatiSinba,
}

/// The SINBA attributes that come from the social worker's assessment of the minor and family
/// (not carried by the interchange events): the caller fills them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatiSinba {
    /// `@MinoreStranieroNoAcc`.
    pub minore_straniero_no_acc: MinoreStranieroNoAcc,
    /// `@CondizioneMinore`.
    pub condizione_minore: CondizioneMinore,
    /// `@LuogoVita`.
    pub luogo_vita: LuogoVita,
    /// `@ScuolaFrequentata`.
    pub scuola_frequentata: ScuolaFrequentata,
    /// `@CondizioneLavoro`.
    pub condizione_lavoro: CondizioneLavoro,
    /// `@Disabilita`.
    pub disabilita: Disabilita,
    /// `@TipoDisabilita`.
    pub tipo_disabilita: Option<TipoDisabilita>,
    /// `@InvCivCertificazioni`.
    pub inv_civ_certificazioni: Option<InvCivCertificazioni>,
    /// `@CodiceCittadinanzaPadre`, 3 digits.
    pub codice_cittadinanza_padre: Option<String>,
    /// `@CodiceCittadinanzaMadre`, 3 digits.
    pub codice_cittadinanza_madre: Option<String>,
    /// `@CodiceRegioneResidenzaPadre`, 2 digits.
    pub codice_regione_residenza_padre: Option<String>,
    /// `@CodiceRegioneResidenzaMadre`, 2 digits.
    pub codice_regione_residenza_madre: Option<String>,
    /// `@TitoloStudioPadre`.
    pub titolo_studio_padre: Option<TitoloStudio>,
    /// `@TitoloStudioMadre`.
    pub titolo_studio_madre: Option<TitoloStudio>,
    /// `@OccupazionePadre`.
    pub occupazione_padre: Option<Occupazione>,
    /// `@OccupazioneMadre`.
    pub occupazione_madre: Option<Occupazione>,
    /// `@DataPrimaSegnalazione`.
    pub data_prima_segnalazione: MeseAnno,
    /// `@FonteSegnalazione`.
    pub fonte_segnalazione: FonteSegnalazione,
    /// `@ValutazioneMinore`.
    pub valutazione_minore: ValutazioneMinore,
    /// `@ValutazioneFamigliaMinore`.
    pub valutazione_famiglia_minore: ValutazioneFamigliaMinore,
    /// `@SegnalazioneAutoritaGiudiziaria`.
    pub segnalazione_autorita_giudiziaria: SegnalazioneAutoritaGiudiziaria,
    /// `@DataSegnalazione`.
    pub data_segnalazione: Option<MeseAnno>,
    /// `@ProvvedimentoGiudiziario`.
    pub provvedimento_giudiziario: ProvvedimentoGiudiziario,
    /// `@DataProvvedimentoGiudiziario`.
    pub data_provvedimento_giudiziario: Option<MeseAnno>,
    /// `@AutoritaProvvedimento`.
    pub autorita_provvedimento: Option<AutoritaProvvedimento>,
    /// `@PotestaTutela`.
    pub potesta_tutela: Option<PotestaTutela>,
    /// `@TipoProvvedimentoGiudiziario`.
    pub tipo_provvedimento_giudiziario: Option<TipoProvvedimentoGiudiziario>,
    /// `@FormaInterventoAffido`.
    pub forma_intervento_affido: Option<FormaInterventoAffido>,
    /// `@TipoInterventoAffido`.
    pub tipo_intervento_affido: Option<TipoInterventoAffido>,
    /// `@DurataAffido`.
    pub durata_affido: Option<DurataAffido>,
    /// `@CarattereAffido`.
    pub carattere_affido: Option<CarattereAffido>,
    /// `@EsitoAffido`.
    pub esito_affido: Option<EsitoAffido>,
    /// `@CarattereInserimentoResidenziale`.
    pub carattere_inserimento_residenziale: Option<CarattereInserimentoResidenziale>,
    /// `@FormaInserimentoResidenziale`.
    pub forma_inserimento_residenziale: Option<FormaInserimentoResidenziale>,
    /// `@TipoInserimentoResidenziale`.
    pub tipo_inserimento_residenziale: Option<TipoInserimentoResidenziale>,
    /// `@EsitoInserimentoStruttura`.
    pub esito_inserimento_struttura: Option<EsitoInserimentoStruttura>,
    /// `@MotivazioneChiusuraCarico`.
    pub motivazione_chiusura_carico: Option<MotivazioneChiusuraCarico>,
    /// `@SituazioneChiusuraCarico`.
    pub situazione_chiusura_carico: Option<SituazioneChiusuraCarico>,
    /// `@CollaborazioniInterventi`.
    pub collaborazioni_interventi: Option<CollaborazioniInterventi>,
    /// `@NumeroComponentiISEE`, at most 9.
    pub numero_componenti_isee: Option<u8>,
    /// `@FasciaISEEBeneficiario`.
    pub fascia_isee_beneficiario: Option<FasciaISEEBeneficiario>,
}

impl DatiSinba {
    /// The required assessment attributes; every optional one absent.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        minore_straniero_no_acc: MinoreStranieroNoAcc,
        condizione_minore: CondizioneMinore,
        luogo_vita: LuogoVita,
        scuola_frequentata: ScuolaFrequentata,
        condizione_lavoro: CondizioneLavoro,
        disabilita: Disabilita,
        data_prima_segnalazione: MeseAnno,
        fonte_segnalazione: FonteSegnalazione,
        valutazione_minore: ValutazioneMinore,
        valutazione_famiglia_minore: ValutazioneFamigliaMinore,
        segnalazione_autorita_giudiziaria: SegnalazioneAutoritaGiudiziaria,
        provvedimento_giudiziario: ProvvedimentoGiudiziario,
    ) -> Self {
        DatiSinba {
            minore_straniero_no_acc,
            condizione_minore,
            luogo_vita,
            scuola_frequentata,
            condizione_lavoro,
            disabilita,
            tipo_disabilita: None,
            inv_civ_certificazioni: None,
            codice_cittadinanza_padre: None,
            codice_cittadinanza_madre: None,
            codice_regione_residenza_padre: None,
            codice_regione_residenza_madre: None,
            titolo_studio_padre: None,
            titolo_studio_madre: None,
            occupazione_padre: None,
            occupazione_madre: None,
            data_prima_segnalazione,
            fonte_segnalazione,
            valutazione_minore,
            valutazione_famiglia_minore,
            segnalazione_autorita_giudiziaria,
            data_segnalazione: None,
            provvedimento_giudiziario,
            data_provvedimento_giudiziario: None,
            autorita_provvedimento: None,
            potesta_tutela: None,
            tipo_provvedimento_giudiziario: None,
            forma_intervento_affido: None,
            tipo_intervento_affido: None,
            durata_affido: None,
            carattere_affido: None,
            esito_affido: None,
            carattere_inserimento_residenziale: None,
            forma_inserimento_residenziale: None,
            tipo_inserimento_residenziale: None,
            esito_inserimento_struttura: None,
            motivazione_chiusura_carico: None,
            situazione_chiusura_carico: None,
            collaborazioni_interventi: None,
            numero_componenti_isee: None,
            fascia_isee_beneficiario: None,
        }
    }
}
