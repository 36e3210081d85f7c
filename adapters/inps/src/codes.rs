//! Coded values of the SIUSS XSDs, one Rust enum per `xs:simpleType` enumeration.
//!
//! Variant order, codes and labels are those of `PS_PSA_SINA201812.xsd` and `SINBA.xsd`
//! (labels are the XSDs' `xs:documentation`). An enum value can only hold a code the XSD allows.

use std::fmt;

macro_rules! code_enum {
    ($(#[$m:meta])* $name:ident { $($var:ident = $code:literal, $label:literal;)+ }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name {
            $(#[doc = concat!("`", $code, "` — ", $label)] $var,)+
        }
        impl $name {
            /// Every value, in XSD order.
            pub const ALL: &'static [$name] = &[$($name::$var),+];
            /// The code written in the XML.
            pub fn code(self) -> &'static str {
                match self { $($name::$var => $code,)+ }
            }
            /// The XSD's label for the code.
            pub fn label(self) -> &'static str {
                match self { $($name::$var => $label,)+ }
            }
            /// Parses an XML code; `None` when the XSD does not allow it.
            pub fn from_code(code: &str) -> Option<Self> {
                match code { $($code => Some($name::$var),)+ _ => None }
            }
        }
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.code())
            }
        }
    };
}

// ---- PS_PSA_SINA201812.xsd
code_enum! {
    /// `GenereType`
    Genere {
        Maschio = "1", "Maschio";
        Femmina = "2", "Femmina";
    }
}
code_enum! {
    /// `TipoOperazioneType`
    TipoOperazione {
        I = "I", "Inserimento";
        C = "C", "Cancellazione";
    }
}
code_enum! {
    /// `PresenzaProvaMezziType`
    PresenzaProvaMezzi {
        Isee = "1", "Prestazione soggetta a ISEE";
        ProvaMezziNonIsee = "2", "Prestazione soggetta a prova dei mezzi, ma non attraverso ISEE (es. prestaz. inps, agevolaz. tribut.)";
        IseeNonApplicato = "3", "Prestazione in generale soggetta a ISEE, ma sottratta alla prova dei mezzi per lo specifico beneficiario in virtu' di altri criteri di bisogno (es. asilo nido per bambino con disabilità o in famiglie numerose, ecc.)";
        NessunaProvaMezzi = "4", "Prestazione non soggetta a prova dei mezzi (assenza di criteri economici nella disciplina dell'erogazione";
    }
}
code_enum! {
    /// `CaratterePrestazioneType`
    CaratterePrestazione {
        Periodico = "1", "Periodico";
        Occasionale = "2", "Occasionale (unica soluzione)";
    }
}
code_enum! {
    /// `PresaCaricoType`
    PresaCarico {
        Si = "1", "SI";
        No = "2", "NO";
    }
}
code_enum! {
    /// `AreaUtenzaType`
    AreaUtenza {
        FamigliaMinori = "1", "Famiglia e minori";
        DisabilitaNonAutosufficienza = "2", "Disabilità e Non autosufficienza";
        PovertaEsclusioneSociale = "3", "Povertà ed esclusione sociale";
    }
}
code_enum! {
    /// `MobilitaType`
    Mobilita {
        SiSpostaSolo = "1", "Si sposta da solo";
        SiSpostaAssistito = "2", "Si Sposta Assistito";
        NonSiSposta = "3", "Non Si Sposta";
    }
}
code_enum! {
    /// `AttivitaVitaQuotidianaType`
    AttivitaVitaQuotidiana {
        Autonomo = "1", "Autonomo";
        ParzialmenteDipendente = "2", "Parzialmente dipendente";
        TotalmenteDipendente = "3", "Totalmente dipendente";
    }
}
code_enum! {
    /// `DisturbiAreaCognitivaType`
    DisturbiAreaCognitiva {
        Lievi = "1", "Lievi";
        Moderati = "2", "Moderati";
        Gravi = "3", "Gravi";
    }
}
code_enum! {
    /// `DisturbiComportamentaliType`
    DisturbiComportamentali {
        Assenti = "1", "Assenti";
        Presenti = "2", "Presenti";
    }
}
code_enum! {
    /// `NecessitaCureSanitarieType`
    NecessitaCureSanitarie {
        Bassa = "1", "Bassa";
        Media = "2", "Media";
        Alta = "3", "Alta";
    }
}
code_enum! {
    /// `AreaRedditualeType`
    AreaReddituale {
        AutonomoEquilibrioFinanziario = "1", "Autonomo e in equilibrio finanziario";
        RiceveAiutoParentiAltre = "2", "Riceve aiuto da parenti e/o da altre persone";
        InCondizioneBisognoEconomico = "3", "In condizione di bisogno economico e senza aiuti da parenti o altre persone";
    }
}
code_enum! {
    /// `AreaSupportoType`
    AreaSupporto {
        PresenzaReteFamiliareInformale = "1", "Presenza della rete familiare o informale";
        PresenzaParzialeTemporaneaRete = "2", "Presenza parziale e/o temporanea della rete familiare o informale";
        AssenzaReteFamiliareInformale = "3", "Assenza della rete familiare o informale";
    }
}
code_enum! {
    /// `FonteDerivazioneValutazioneType`
    FonteDerivazioneValutazione {
        Uvm = "1", "UVM";
        CartellaSociale = "2", "Cartella sociale";
        AltraDocumentazione = "3", "Altra documentazione";
        RaccoltaDiretta = "4", "Raccolta diretta";
    }
}
code_enum! {
    /// `StrumentoValutazioneType`
    StrumentoValutazione {
        Svama = "1", "SVAMA";
        Aged = "2", "AGED";
        Rug = "3", "RUG";
        Sosia = "4", "SOSIA";
        SchemaPolare = "5", "SCHEMA POLARE";
        Valgraf = "6", "VALGRAF";
        AltroSistemaCodifica = "7", "Altro Sistema Di Codifica";
    }
}
code_enum! {
    /// `InvCivType`
    InvCiv {
        Parziale75 = "1", "Certificazione Invalidita' Civile parziale non inferiore al 75%";
        Totale100ConAccompagnamento = "2", "Certificazione Invalidita' Civile Totale (100%) Con Indennita' di accompagnamento";
        Totale100SenzaAccompagnamento = "3", "Certificazione Invalidita' Civile totale (100%) senza indennita' di accompagnamento";
        Npi = "4", "Certificazione Npi";
        L104Art3Comma1 = "5", "Certificazione L.104 (art.3, comma 1)";
        L104Art3Comma3 = "6", "Certificazione L.104 (art.3, comma 3)";
        L104Art12 = "7", "Certificazione L.104 (art.12)";
        L104Art13 = "8", "Certificazione L.104 (art.13)";
    }
}
code_enum! {
    /// `FonteDerivazioneInvaliditaType`
    FonteDerivazioneInvalidita {
        CertificazioneVerificata = "1", "Certificazione invalidita' verificata on line o cartacea";
        DichiarazionePersona = "2", "Dichiarazione della persona";
    }
}
// ---- SINBA.xsd
code_enum! {
    /// `ComposizioneFamigliaType`
    ComposizioneFamiglia {
        Madre = "1", "Madre";
        Padre = "2", "Padre";
        FratelliSorelle = "3", "Fratelli/Sorelle";
        Nonno = "4", "Nonno/a";
        CompagnoMadrePadre = "5", "Compagno/a della madre o del padre";
        AltriConviventi = "6", "Altri conviventi";
    }
}
code_enum! {
    /// `MinoreStranieroNoAccType`
    MinoreStranieroNoAcc {
        Si = "1", "SI";
        No = "2", "NO";
    }
}
code_enum! {
    /// `CondizioneMinoreType`
    CondizioneMinore {
        NonOrfano = "1", "Non orfano";
        OrfanoEntrambi = "2", "Orfano di entrambi";
        OrfanoPadre = "3", "Orfano di padre";
        OrfanoMadre = "4", "Orfano di madre";
        GenitoriIgnoti = "5", "Genitori ignoti";
    }
}
code_enum! {
    /// `LuogoVitaType`
    LuogoVita {
        NellaSuaFamiglia = "1", "nella sua famiglia";
        PressoParenti = "2", "presso parenti";
        InFamigliaAffidataria = "3", "in famiglia affidataria";
        InStrutturaResidenzialeSociale = "4", "in struttura residenziale sociale";
        InStrutturaResidenzialeSanitaria = "5", "in struttura residenziale sanitaria";
        InIstitutoPenaleMinorile = "6", "in istituto penale minorile";
        ConAmiciConoscenti = "7", "con amici e conoscenti";
        SenzaDimora = "8", "senza dimora";
    }
}
code_enum! {
    /// `ScuolaFrequentataType`
    ScuolaFrequentata {
        NessunaScuola = "1", "nessuna scuola";
        Struttura = "2", "struttura";
        AsiloNido = "3", "asilo nido";
        ScuolaDellInfanzia = "4", "scuola dell'infanzia";
        ScuolaPrimaria = "5", "scuola primaria";
        ScuolaSecondariaIGrado = "6", "scuola secondaria I grado";
        ScuolaSecondariaIiGrado = "7", "scuola secondaria II grado";
        CorsoFormazioneProfessionale = "8", "corso formazione professionale";
    }
}
code_enum! {
    /// `CondizioneLavoroType`
    CondizioneLavoro {
        Inattivo = "1", "inattivo (non in età da lavoro, non ha e non cerca lavoro)";
        Occupato = "2", "occupato";
        DisoccupatoRicercaNuovaOccupazione = "3", "disoccupato alla ricerca di nuova occupazione";
        InCercaPrimaOccupazione = "4", "in cerca di prima occupazione";
    }
}
code_enum! {
    /// `DisabilitaType`
    Disabilita {
        Si = "1", "SI";
        No = "2", "NO";
    }
}
code_enum! {
    /// `TipoDisabilitaType`
    TipoDisabilita {
        Fisica = "1", "Fisica";
        Psichica = "2", "Psichica";
        Sensoriale = "3", "Sensoriale";
        Plurima = "4", "Plurima";
    }
}
code_enum! {
    /// `InvCivCertificazioniType`
    InvCivCertificazioni {
        Parziale75 = "1", "certificazione invalidità civile parziale non inferiore al 75%";
        Totale100ConAccompagnamento = "2", "certificazione invalidità civile totale (100%) con indennità di accompagnamento";
        Totale100SenzaAccompagnamento = "3", "certificazione invalidità civile totale (100%) senza indennità di accompagnamento";
        Npi = "4", "certificazione NPI";
        L104 = "5", "certificazione l.104";
    }
}
code_enum! {
    /// `TitoloStudioType`
    TitoloStudio {
        NessunTitolo = "1", "nessun titolo";
        LicenzaElementare = "2", "licenza elementare";
        LicenzaMedia = "3", "licenza media";
        QualificaProfessionale = "4", "qualifica professionale";
        DiplomaScuolaSuperiore = "5", "diploma scuola superiore";
        LaureaDiplomaLaurea = "6", "laurea o diploma di laurea";
    }
}
code_enum! {
    /// `OccupazioneType`
    Occupazione {
        Occupato = "1", "occupato";
        DisoccupatoRicercaNuovaOccupazione = "2", "disoccupato alla ricerca di nuova occupazione";
        InCercaPrimaOccupazione = "3", "in cerca di prima occupazione";
        Casalinga = "4", "casalinga/o";
        Studente = "5", "studente";
        RitiratoDalLavoro = "6", "ritirato/a dal lavoro";
        InabileLavoro = "7", "inabile al lavoro";
        InAltraCondizione = "8", "in altra condizione";
    }
}
code_enum! {
    /// `FonteSegnalazioneType`
    FonteSegnalazione {
        ServizioSocialeMinoriGiustizia = "1", "servizio sociale minori della giustizia minorile";
        AltroServizioSociale = "2", "altro servizio sociale (consultori, centri famiglia, di altro ambito/distretto, ..)";
        ServiziSanitariMedicoBase = "3", "servizi sanitari/medico di base/pediatra";
        PrivatoSocialeVolontariato = "4", "privato sociale/volontariato";
        ForzeDellOrdine = "5", "forze dell'ordine";
        BeneficiarioStesso = "6", "beneficiario stesso";
        GenitoriAffidatariTutore = "7", "genitori affidatari/tutore";
        GenitoriFratelliAltriFamiliari = "8", "genitori/fratelli/altri familiari conviventi";
        ParentiNonConviventi = "9", "parenti non conviventi";
        TribunaleOrdinario = "10", "tribunale ordinario";
        AutoritaGiudiziarieMinorili = "11", "autorità giudiziarie minorili";
        ProfessionistaPrivato = "12", "professionista privato";
        Scuola = "13", "scuola";
        VicinatoConoscenti = "14", "vicinato o conoscenti";
    }
}
code_enum! {
    /// `ValutazioneMinoreType`
    ValutazioneMinore {
        NessunaSpecificaProblematica = "1", "nessuna specifica problematica";
        ProblemiRelazionaliComportamentali = "2", "problemi relazionali e comportamentali";
        Dipendenze = "3", "dipendenze";
        PresuntoStatoAbbandono = "4", "presunto stato di abbandono";
        ProblemiSanitari = "5", "problemi sanitari";
        ViolenzaSessualeSubitaProstituzione = "6", "violenza sessuale subita, prostituzione, tratta, pedopornografia";
        AltreFormeViolenzaMaltrattamento = "7", "altre forme di violenza e maltrattamento subite";
        ComportamentiGraveDevianza = "8", "comportamenti di grave devianza";
        ProblemiAutonomiaDisabilita = "9", "problemi di autonomia, disabilità";
        CoinvoltoProcedurePenali = "10", "coinvolto in procedure penali";
        GestanteMadreMinorenne = "11", "gestante/madre minorenne";
        MinoreStranieroNonAccompagnato = "12", "minore straniero non accompagnato";
        AbbandonoScolastico = "13", "abbandono scolastico";
    }
}
code_enum! {
    /// `ValutazioneFamigliaMinoreType`
    ValutazioneFamigliaMinore {
        NessunaSpecifica = "1", "nessuna specifica";
        ProblematicaFragilitaInadeguatezzaGenitoriale = "2", "problematica fragilità/inadeguatezza genitoriale, problematiche socio-educative e relazionali";
        Dipendenza = "3", "dipendenza";
        ProblematichePsichiatriche = "4", "problematiche psichiatriche";
        AltreProblematicheSanitarie = "5", "altre problematiche sanitarie";
        GraveConflittualitaFamiliare = "6", "grave conflittualità familiare";
        FamigliaMaltrattante = "7", "famiglia maltrattante";
        FamigliaAbusante = "8", "famiglia abusante";
        ProblemiGiudiziari = "9", "problemi giudiziari";
        FallimentoAffidoPreadottivo = "10", "fallimento affido preadottivo nel I anno";
        InadempienzaObblighiSanitari = "11", "inadempienza obblighi sanitari";
        DifficoltaEconomiche = "12", "difficoltà economiche";
        DifficoltaAbitative = "13", "difficoltà abitative";
    }
}
code_enum! {
    /// `SegnalazioneAutoritaGiudiziariaType`
    SegnalazioneAutoritaGiudiziaria {
        Si = "1", "SI";
        No = "2", "NO";
    }
}
code_enum! {
    /// `ProvvedimentoGiudiziarioType`
    ProvvedimentoGiudiziario {
        Si = "1", "SI";
        No = "2", "NO";
    }
}
code_enum! {
    /// `AutoritaProvvedimentoType`
    AutoritaProvvedimento {
        GiudiceTutelare = "1", "Giudice tutelare";
        TribunaleMinori = "2", "Tribunale per i minori";
        ProcuraMinori = "3", "Procura per i minori";
        TribunaleOrdinario = "4", "Tribunale ordinario";
    }
}
code_enum! {
    /// `PotestaTutelaType`
    PotestaTutela {
        SospensionePotestaGenitoriale = "1", "sospensione potestà genitoriale";
        DecadenzaPotestaGenitoriale = "2", "decadenza potestà genitoriale";
        PrescrizioniAiGenitori = "3", "prescrizioni ai genitori";
        TutelaParentiAltriSoggetti = "4", "tutela a parenti o altri soggetti";
        Curatela = "5", "curatela";
    }
}
code_enum! {
    /// `TipoProvvedimentoGiudiziarioType`
    TipoProvvedimentoGiudiziario {
        Adottabilita = "1", "adottabilità";
        AdozioneNazionale = "2", "adozione nazionale";
        AdozioneInternazionale = "3", "adozione internazionale";
        AffidamentoFamiliare = "4", "affidamento familiare";
        AffidoServizioSociale = "5", "affido al servizio sociale";
        AffidamentoUnoGenitoriCaso = "6", "affidamento a uno dei genitori in caso di separazione";
        Vigilanza = "7", "vigilanza";
        PostAdozioneAllontanamentoMinore = "8", "post-adozione \"allontanamento del minore in via d'emergenza (art.403 c.c.)";
    }
}
code_enum! {
    /// `FormaInterventoAffidoType`
    FormaInterventoAffido {
        Consensuale = "1", "Consensuale";
        Giudiziario = "2", "Giudiziario";
    }
}
code_enum! {
    /// `TipoInterventoAffidoType`
    TipoInterventoAffido {
        Intrafamiliare = "1", "Intrafamiliare";
        Eterofamiliare = "2", "Eterofamiliare";
    }
}
code_enum! {
    /// `DurataAffidoType`
    DurataAffido {
        TempoPieno = "1", "Tempo pieno";
        TempoParziale = "2", "Tempo parziale";
    }
}
code_enum! {
    /// `CarattereAffidoType`
    CarattereAffido {
        Residenziale = "1", "Residenziale";
        Diurno = "2", "Diurno";
    }
}
code_enum! {
    /// `EsitoAffidoType`
    EsitoAffido {
        RientratoFamigliaOrigine = "1", "rientrato nella famiglia di origine";
        AffidataAdAltroNucleo = "2", "affidata ad altro nucleo familiare";
        Adottato = "3", "adottato";
        InseritoStrutturaSocioEducativa = "4", "inserito in struttura socio-educativa";
        InseritoStrutturaSanitaria = "5", "inserito in struttura sanitaria";
        VitaAutonomia = "6", "vita in autonomia";
        Rimpatriato = "7", "rimpatriato";
        DestinazioneIgnota = "8", "destinazione ignota";
        Altro = "9", "altro";
    }
}
code_enum! {
    /// `CarattereInserimentoResidenzialeType`
    CarattereInserimentoResidenziale {
        FamiliarePrevalenteAccoglienzaAbitativa = "1", "familiare-prevalente accoglienza abitativa";
        FamiliarePrevalenteFunzioneTutelare = "2", "familiare-prevalente funzione tutelare";
        FamiliareFunzioneSocioEducativa = "3", "familiare-funzione socio-educativa";
        ComunitarioAccoglienzaEmergenza = "4", "comunitario-accoglienza di emergenza";
        ComunitarioPrevalenteAccoglienzaAbitativa = "5", "comunitario-prevalente accoglienza abitativa";
        ComunitarioPrevalenteFunzioneTutelare = "6", "comunitario-prevalente funzione tutelare";
        ComunitarioFunzioneSocioEducativa = "7", "comunitario-funzione socio-educativa";
        ComunitarioFunzioneEducativaPsicologica = "8", "comunitario-funzione educativa-psicologica";
        ComunitarioIntegrazioneSocioSanitariaBassa = "9", "comunitario-funzione integrazione socio-sanitaria bassa";
        ComunitarioIntegrazioneSocioSanitariaMedioAlta = "10", "comunitario-funzione integrazione socio-sanitaria medio-alta";
    }
}
code_enum! {
    /// `FormaInserimentoResidenzialeType`
    FormaInserimentoResidenziale {
        Consensuale = "1", "Consensuale";
        Giudiziario = "2", "Giudiziario";
    }
}
code_enum! {
    /// `TipoInserimentoResidenzialeType`
    TipoInserimentoResidenziale {
        ConGenitore = "1", "Con genitore";
        SenzaGenitore = "2", "Senza genitore";
    }
}
code_enum! {
    /// `EsitoInserimentoStrutturaType`
    EsitoInserimentoStruttura {
        RientratoFamigliaOrigine = "1", "rientrato nella famiglia di origine";
        InFamigliaAffidatariaAffidatario = "2", "in famiglia affidataria o affidatario";
        Adottato = "3", "adottato";
        InseritoAltraStrutturaSocio = "4", "inserito in altra struttura socio-educativa";
        InseritoStrutturaSanitaria = "5", "inserito in struttura sanitaria";
        ResoAutonomo = "6", "reso autonomo";
        Rimpatriato = "7", "rimpatriato";
        DestinazioneIgnota = "8", "destinazione ignota";
        Altro = "9", "altro";
    }
}
code_enum! {
    /// `MotivazioneChiusuraCaricoType`
    MotivazioneChiusuraCarico {
        AltroAmbitoStessaRegione = "1", "passaggio a servizio territoriale altro ambito/distretto della stessa regione";
        AltroAmbitoAltraRegione = "2", "passaggio a servizio territoriale altro ambito/distretto di altra regione";
        RaggiuntaEtaMaggiorenne = "3", "raggiunta età maggiorenne";
        ConclusioneInterventi = "4", "conclusione degli interventi e della presa in carico per risoluzione dello stato di bisogno";
        UscitaRichiesta = "5", "uscita richiesta dal minore utente o dalla famiglia";
        Rimpatrio = "6", "rimpatrio";
        Irreperibilita = "7", "irreperibilità";
        Decesso = "8", "decesso";
        Altro = "9", "altro";
    }
}
code_enum! {
    /// `SituazioneChiusuraCaricoType`
    SituazioneChiusuraCarico {
        NellaFamigliaOrigine = "1", "Nella famiglia di origine";
        VitaAutonomia = "2", "vita in autonomia (in appartamento anche con altri non familiari o parenti)";
        RimaneFamigliaAffidatariaAnche = "3", "rimane nella famiglia affidataria anche se maggiorenne";
        RimaneStrutturaResidenzialeSocio = "4", "rimane nella struttura residenziale socio-assistenziale anche se maggiorenne";
        CollocatoStrutturaResidenzialeSanitaria = "5", "collocato in struttura residenziale sanitaria";
        AdottatoUnaNuovaFamiglia = "6", "adottato in una nuova famiglia";
        InIstitutoPenale = "7", "in istituto penale";
        DestinazioneIgnota = "8", "destinazione ignota";
    }
}
code_enum! {
    /// `CollaborazioniInterventiType`
    CollaborazioniInterventi {
        Sert = "1", "SERT";
        Npi = "2", "NPI";
        Psicologia = "3", "psicologia";
        ClinicaDsm = "4", "clinica/dsm";
        AltriServiziSociali = "5", "altri servizi sociali (consultorio, centri famiglia, adulti, di altro abito/distretto)";
        UssmMinisteroGiustizia = "6", "ussm ministero giustizia";
        Scuola = "7", "scuola";
        ServiziPrivatoSocialeAssociazionismo = "8", "servizi privato sociale associazionismo, volontariato";
        Altro = "9", "altro";
    }
}
code_enum! {
    /// `FasciaEtaBeneficiarioType`
    FasciaEtaBeneficiario {
        Da0a3 = "1", "0-3 anni";
        Da3a6 = "2", "3-6 anni";
        Da6a9 = "3", "6-9 anni";
        Da9a12 = "4", "9-12 anni";
        Da12a15 = "5", "12-15 anni";
        Da15a18 = "6", "15-18 anni";
    }
}
code_enum! {
    /// `FasciaISEEBeneficiarioType`
    FasciaISEEBeneficiario {
        Zero = "1", "Valore ISEE=0";
        Fino3000 = "2", "Tra 0.01 a 3000 Euro";
        Fino6000 = "3", "Tra 3000.01 e 6000";
        Fino9000 = "4", "Tra 6000.01 e 9000";
        Fino12000 = "5", "Tra 9000.01 e 12000";
        Fino15000 = "6", "Tra 12000.01 e 15000";
        Fino20000 = "7", "Tra 15000.01 e 20000";
        Oltre20000 = "8", "Oltre i 20000 euro";
    }
}
