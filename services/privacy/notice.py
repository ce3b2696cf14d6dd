"""The public privacy notice, in Latvian and English, written from the record of processing.

Every section says which clauses of the shop's policy it covers; together they cover P1-P30
(a test checks it). What varies with the code (categories, purposes, periods, recipients,
processors, measures) comes from the record; the Latvian for those strings is in
``notice_lv.py``, and a string without one stops the notice being built. The fixed sentences
are here, in both languages.
"""
from __future__ import annotations

from services.privacy import domain
from services.privacy.document import Document, Language, Section
from services.privacy.notice_lv import LATVIAN
from services.privacy.records import RecordOfProcessing
from shared.contracts.privacy import ACCOUNTING_PERIOD, LegalBasis, Retention


class MissingTranslation(LookupError):
    """A string the code declares has no Latvian in notice_lv.py."""


BASES = {
    "en": {LegalBasis.CONTRACT: "performing our contract with you (GDPR Art. 6(1)(b))",
           LegalBasis.LEGAL_OBLIGATION: "a legal obligation, such as accounting or consumer complaints (Art. 6(1)(c))",
           LegalBasis.CONSENT: "your consent, which you may withdraw at any time (Art. 6(1)(a))",
           LegalBasis.LEGITIMATE_INTEREST: "our legitimate interests: running the shop securely and well "
                                           "(Art. 6(1)(f))"},
    "lv": {LegalBasis.CONTRACT: "mūsu līguma ar jums izpilde (VDAR 6. panta 1. punkta b) apakšpunkts)",
           LegalBasis.LEGAL_OBLIGATION: "juridisks pienākums, piemēram, grāmatvedība vai patērētāju sūdzības "
                                        "(6. panta 1. punkta c) apakšpunkts)",
           LegalBasis.CONSENT: "jūsu piekrišana, kuru varat jebkurā laikā atsaukt (6. panta 1. punkta a) apakšpunkts)",
           LegalBasis.LEGITIMATE_INTEREST: "mūsu leģitīmās intereses: droša un laba veikala darbība "
                                           "(6. panta 1. punkta f) apakšpunkts)"},
}
ROLES = {
    "en": {"support": "customer support", "accounting": "our accountants", "marketing": "our marketing staff",
           "admin": "our administrators"},
    "lv": {"support": "klientu atbalsts", "accounting": "mūsu grāmatveži", "marketing": "mūsu mārketinga darbinieki",
           "admin": "mūsu administratori"},
}
KINDS = {
    "en": {"carrier": "the carrier you choose", "accounting": "our bookkeeping provider",
           "hosting": "our hosting provider", "psp": "the payment service provider",
           "email": "the e-mail relay", "sms": "the SMS gateway"},
    "lv": {"carrier": "jūsu izvēlētais pārvadātājs", "accounting": "mūsu grāmatvedības pakalpojumu sniedzējs",
           "hosting": "mūsu hostinga pakalpojumu sniedzējs", "psp": "maksājumu pakalpojumu sniedzējs",
           "email": "e-pasta pārsūtītājs", "sms": "īsziņu vārteja"},
}
TEXT = {
    "en": {
        "title": "Privacy notice",
        "generated": "This notice is generated from the shop's code: each part below is what the software declares "
                     "and does. Its Latvian version is the original.",
        "who": "Who is responsible",
        "controller": "{name} is the controller of your personal data. Write to {contact} with any question.",
        "what": "What we process, why, on what basis and for how long",
        "what_intro": "Each kind of data the shop keeps, with its purpose, the legal basis and how long it is kept:",
        "columns": ["Data", "Why", "Legal basis", "Kept"],
        "cards": "Card data",
        "cards_text": "Your card number and security code go from your browser straight to the payment service "
                      "provider and never reach the shop: we keep only its token, the card's brand, last four digits "
                      "and expiry. They are used to make a one-time payment, to refund it to the same card, and for "
                      "the monthly payment of a membership you take out.",
        "recipients": "Who receives it",
        "staff": "Within the shop, {role} see {categories}.",
        "processors": "These processors receive data on our behalf, under contracts that oblige them to keep it "
                      "secure; each is registered with the data it receives:",
        "processor": "{kind} ({name}): {categories}. {description}.",
        "carrier_only": "Only the carrier you choose for an order receives your name, phone, e-mail and delivery "
                        "address; the others receive nothing.",
        "keeping": "How long we keep it",
        "keeping_text": [
            "When you close your account, your data is erased, except what must be kept for accounting or to settle "
            "a dispute; you are told what is kept, why and until when.",
            "The purchase history of an order placed without an account is kept for three years.",
            "In a dispute about a payment or a consumer complaint, the data concerned is kept until the claim is "
            "settled or its limitation period ends.",
            "Data needed for accounting (invoices and payments) is kept for {years} years.",
            "Each period in the table above is kept by a scheduled task, not by hand."],
        "security": "Security and staff access",
        "security_intro": "Employees may see personal data only to solve technical questions and to help customers; "
                          "every look is recorded with its reason. The measures the shop takes:",
        "cookies": "Cookies and web identifiers",
        "cookies_text": "The shop's services set no cookies of their own for analytics or marketing. They process "
                        "the network you sign in from, to keep the shop secure and count its use:",
        "rights": "Your rights",
        "rights_items": [
            "See and correct your data in your profile; if you bought without an account, ask customer support, "
            "who will check by e-mail that the address is yours.",
            "Get a copy of everything the shop and its processors hold about you, as a file you can take elsewhere.",
            "Have your data erased: the shop, and every processor that received it, erases it; you are told per "
            "part what was erased and what must be kept, why and until when.",
            "Withdraw a consent, or object to direct marketing and profiling, at any time: it stops at once. Every "
            "message we send carries a link to stop it; you can also write to customer support.",
            "Requests are answered within one month; for a complex one we may take up to {months} more months, "
            "and tell you why within the first month."],
        "disputes": "Questions and disputes",
        "disputes_text": "Disputes about how your data is processed are settled through {contact}. You may also "
                         "complain to {authority}.",
    },
    "lv": {
        "title": "Paziņojums par privātumu",
        "generated": "Šis paziņojums ir izveidots no veikala programmatūras: katra tā daļa ir tas, ko programmatūra "
                     "deklarē un dara. Tā latviešu versija ir oriģināls.",
        "who": "Kas ir atbildīgs",
        "controller": "{name} ir jūsu personas datu pārzinis. Ar jebkuru jautājumu rakstiet uz {contact}.",
        "what": "Ko mēs apstrādājam, kāpēc, uz kāda pamata un cik ilgi",
        "what_intro": "Katrs datu veids, ko veikals glabā, ar tā nolūku, juridisko pamatu un glabāšanas laiku:",
        "columns": ["Dati", "Kāpēc", "Juridiskais pamats", "Glabā"],
        "cards": "Kartes dati",
        "cards_text": "Jūsu kartes numurs un drošības kods no jūsu pārlūka nonāk tieši pie maksājumu pakalpojumu "
                      "sniedzēja un veikalu nesasniedz: mēs glabājam tikai tā pilnvaru (token), kartes zīmolu, pēdējos "
                      "četrus ciparus un derīguma termiņu. Tos izmanto vienreizējam maksājumam, tā atmaksai uz to pašu "
                      "karti un jūsu izvēlētās dalības ikmēneša maksājumam.",
        "recipients": "Kas tos saņem",
        "staff": "Veikalā {role} redz: {categories}.",
        "processors": "Šie apstrādātāji saņem datus mūsu vārdā saskaņā ar līgumiem, kas tiem uzliek pienākumu tos "
                      "aizsargāt; katrs ir reģistrēts ar datiem, ko tas saņem:",
        "processor": "{kind} ({name}): {categories}. {description}.",
        "carrier_only": "Jūsu vārdu, tālruni, e-pastu un piegādes adresi saņem tikai pasūtījumam jūsu izvēlētais "
                        "pārvadātājs; pārējie nesaņem neko.",
        "keeping": "Cik ilgi mēs tos glabājam",
        "keeping_text": [
            "Kad slēdzat savu kontu, jūsu dati tiek dzēsti, izņemot tos, kas jāglabā grāmatvedībai vai strīda "
            "atrisināšanai; jums pasaka, kas tiek glabāts, kāpēc un līdz kuram laikam.",
            "Bez konta veikta pirkuma vēsture tiek glabāta trīs gadus.",
            "Strīdā par maksājumu vai patērētāja sūdzībā attiecīgie dati tiek glabāti, līdz prasījums ir "
            "apmierināts vai beidzas tā noilgums.",
            "Grāmatvedībai vajadzīgie dati (rēķini un maksājumi) tiek glabāti {years} gadus.",
            "Katru augstāk tabulā minēto termiņu ievēro ieplānots uzdevums, nevis cilvēks."],
        "security": "Drošība un darbinieku piekļuve",
        "security_intro": "Darbinieki personas datus drīkst redzēt tikai tehnisku jautājumu risināšanai un klientu "
                          "atbalstam; katra piekļuve tiek reģistrēta ar tās iemeslu. Veikala pasākumi:",
        "cookies": "Sīkdatnes un tīmekļa identifikatori",
        "cookies_text": "Veikala pakalpojumi neizmanto savas sīkdatnes analītikai vai mārketingam. Tie apstrādā "
                        "tīklu, no kura piesakāties, lai veikals būtu drošs un lai uzskaitītu tā lietojumu:",
        "rights": "Jūsu tiesības",
        "rights_items": [
            "Redzēt un labot savus datus savā profilā; ja pirkāt bez konta, vērsieties klientu atbalstā, kas pa "
            "e-pastu pārbaudīs, ka adrese ir jūsu.",
            "Saņemt kopiju no visa, ko veikals un tā apstrādātāji par jums glabā, kā datni, ko varat nodot citur.",
            "Panākt savu datu dzēšanu: tos dzēš veikals un katrs apstrādātājs, kas tos saņēma; jums pasaka par katru "
            "daļu, kas dzēsts un kas jāglabā, kāpēc un līdz kuram laikam.",
            "Jebkurā laikā atsaukt piekrišanu vai iebilst pret tiešo mārketingu un profilēšanu: tas beidzas "
            "nekavējoties. Katrā mūsu vēstulē ir saite, lai to pārtrauktu; varat arī rakstīt klientu atbalstam.",
            "Uz pieprasījumiem atbildam viena mēneša laikā; sarežģītam varam prasīt vēl līdz {months} mēnešiem un "
            "pirmā mēneša laikā pateiksim, kāpēc."],
        "disputes": "Jautājumi un strīdi",
        "disputes_text": "Strīdus par jūsu datu apstrādi risina, rakstot uz {contact}. Varat arī iesniegt sūdzību "
                         "{authority}.",
    },
}
UNITS = {"en": ("day", "days", "year", "years"), "lv": ("diena", "dienas", "gads", "gadi")}


def words(text: str, language: Language, *, declared: bool = True) -> str:
    """``text`` as the code declares it (English), in ``language``. What a deployment's partner
    registry says of its partners (``declared=False``) may have no Latvian here: it is shown
    as written."""
    if language == "en":
        return text
    if text in LATVIAN or not declared:
        return LATVIAN.get(text, text)
    raise MissingTranslation(f"no Latvian for {text!r}: add it to services/privacy/notice_lv.py")


def kept(retention: Retention, language: Language) -> str:
    """'3 years after the request is received', 'until the account is closed' (the Latvian of
    an ``after`` reads after 'pēc'; an 'until ...' is translated whole)."""
    if retention.period_days is None:
        return words(f"until {retention.after}", language)
    day, days, year, years = UNITS[language]
    n = retention.period_days
    amount = (f"{round(n / 365.25)} {year if round(n / 365.25) == 1 else years}" if n >= 360
              else f"{n} {day if n == 1 else days}")
    return f"{amount} {'after' if language == 'en' else 'pēc'} {words(retention.after, language)}"


def build(record: RecordOfProcessing, language: Language) -> Document:
    t = TEXT[language]
    c = record.controller
    rows: dict[str, list[list[str]]] = {}
    for a in record.activities:  # one row per category, however many services hold it
        row = rows.setdefault(a.category, [words(a.category, language), [], [], []])
        for column, value in ((1, words(a.purpose, language)), (2, BASES[language][a.legal_basis]),
                              (3, kept(a.retention, language))):
            if value not in row[column]:
                row[column].append(value)
    table = [[row[0], "; ".join(row[1]), "; ".join(row[2]), "; ".join(row[3])] for row in rows.values()]

    seen_by: dict[str, list[str]] = {}
    for a in record.activities:
        for role in a.recipients:
            if role in ROLES[language] and words(a.category, language) not in seen_by.setdefault(role, []):
                seen_by[role].append(words(a.category, language))
    staff = [t["staff"].format(role=ROLES[language][role], categories=", ".join(seen_by[role]))
             for role in ROLES[language] if role in seen_by]
    processors = [t["processor"].format(
        kind=KINDS[language][p.kind.value], name=p.name,
        categories=", ".join(words(d, language, declared=False) for d in p.data_categories),
        description=words(p.description, language, declared=False).rstrip(".")) for p in record.processors]
    network = [f"{words(a.category, language)}: {kept(a.retention, language)}"
               for a in record.activities if "P19" in a.clauses]
    years = round(ACCOUNTING_PERIOD.days / 365.25)
    return Document(language=language, title=t["title"], sections=[
        Section(("P30",), t["who"], [t["generated"], t["controller"].format(name=c.name, contact=c.contact)],
                key="who"),
        Section(("P1", "P2", "P4", "P5", "P6", "P8", "P9", "P10", "P11"), t["what"], [t["what_intro"]],
                table=(t["columns"], table), key="what"),
        Section(("P3", "P7"), t["cards"], [t["cards_text"]], key="cards"),
        Section(("P12", "P13", "P14", "P15", "P18"), t["recipients"], [*staff, t["processors"]],
                items=[*processors, t["carrier_only"]], key="recipients"),
        Section(("P22", "P23", "P24", "P25"), t["keeping"],
                [p.format(years=years) for p in t["keeping_text"]], key="keeping"),
        Section(("P16", "P17"), t["security"], [t["security_intro"]],
                items=[words(m.measure, language) for m in record.security_measures], key="security"),
        Section(("P19",), t["cookies"], [t["cookies_text"]], items=network, key="cookies"),
        Section(("P20", "P21", "P26", "P27", "P28", "P29"), t["rights"],
                items=[i.format(months=domain.MAX_EXTENSION_MONTHS) for i in t["rights_items"]], key="rights"),
        Section(("P30",), t["disputes"], [t["disputes_text"].format(contact=c.contact,
                                                                    authority=c.supervisory_authority)],
                key="disputes"),
    ])
