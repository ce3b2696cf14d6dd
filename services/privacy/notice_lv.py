"""The Latvian of every string the privacy notice takes from the code's declarations
(categories, purposes, periods, processors, security measures). A string missing here stops
the notice being built: ``python -m services.privacy.notice_lv`` lists what is missing."""
from __future__ import annotations

LATVIAN: dict[str, str] = {
    # accounts
    "contact details": "kontaktinformācija",
    "the customer's account: sign-in, contact about orders and support":
        "klienta konts: pieteikšanās, saziņa par pasūtījumiem un atbalsts",
    "until the account is closed, until the privacy service erases it":
        "līdz konta slēgšanai un pēc tam līdz brīdim, kad privātuma pakalpojums tos dzēš",
    "credentials": "pieteikšanās dati",
    "sign-in (an argon2id hash; the password itself is never stored)":
        "pieteikšanās (Argon2id jaucējvērtība; pati parole nekad netiek glabāta)",
    "acceptance of the terms": "noteikumu pieņemšana",
    "show which terms the customer accepted and that the address is theirs":
        "pierādīt, kurus noteikumus klients ir pieņēmis un ka adrese pieder viņam",
    "delivery addresses": "piegādes adreses",
    "the customer's address book for deliveries": "klienta adrešu saraksts piegādēm",
    "sessions (security log)": "sesijas (drošības žurnāls)",
    "provide the shop securely: show the customer where they are signed in, end stolen sessions":
        "nodrošināt drošu veikala darbību: parādīt klientam, kur viņš ir pieteicies, un pārtraukt nozagtas sesijas",
    "the session ends": "sesijas beigām",
    "e-mail verifications and registrations awaiting one":
        "e-pasta adreses pārbaudes un reģistrācijas, kas gaida pārbaudi",
    "confirm that an address belongs to the customer before an account or a change takes effect":
        "pārliecināties, ka adrese pieder klientam, pirms konts vai izmaiņas stājas spēkā",
    "the code is used or expires": "koda izmantošanas vai tā derīguma beigām",
    "e-mail to the customer": "e-pasta vēstules klientam",
    "send verification codes and account notices": "nosūtīt pārbaudes kodus un paziņojumus par kontu",
    "the message is sent": "vēstules nosūtīšanas",
    "sign-in throttling": "pieteikšanās mēģinājumu ierobežošana",
    "stop password guessing (keyed hashes of addresses and networks, never in the clear)":
        "novērst paroļu minēšanu (ar atslēgu veidotas adrešu un tīklu jaucējvērtības, nekad atklātā veidā)",
    "the failed attempt": "neveiksmīgā mēģinājuma",
    "usage statistics": "lietojuma statistika",
    "web usage statistics, from truncated addresses (/24, /48) only, never tied to a customer":
        "tīmekļa lietojuma statistika tikai no saīsinātām adresēm (/24, /48), nekad nesaistot to ar klientu",
    "the day counted": "uzskaitītās dienas",
    "staff access records": "darbinieku piekļuves ieraksti",
    "account for every staff look at a customer's data":
        "atskaitīties par katru gadījumu, kad darbinieks skata klienta datus",
    "the access": "piekļuves",
    # shared by every service: outbox, calls, subjects, webhooks
    "events awaiting delivery to other services": "notikumi, kas gaida piegādi citiem pakalpojumiem",
    "deliver each change to the services that act on it, exactly once":
        "nodot katras izmaiņas tieši vienu reizi tiem pakalpojumiem, kas uz tām reaģē",
    "the event is published": "notikuma publicēšanas",
    "replies to state-changing calls": "atbildes uz stāvokli mainošiem izsaukumiem",
    "answer a repeated call with its first reply instead of acting twice":
        "uz atkārtotu izsaukumu atbildēt ar tā pirmo atbildi, nevis izpildīt to divreiz",
    "the call": "izsaukuma",
    "erased data subjects (tombstones)": "dzēstie datu subjekti (dzēšanas atzīmes)",
    "drop late events about a subject after its erasure, so none writes the data back":
        "pēc datu subjekta dzēšanas atmest novēlotus notikumus par to, lai neviens no tiem neierakstītu datus atpakaļ",
    ("until the service is retired (a late event may come at any time); a keyed hash that names no one without "
     "the service's key"):
        ("visu pakalpojuma darbības laiku (novēlots notikums var pienākt jebkurā brīdī); ar atslēgu veidota "
         "jaucējvērtība, kas bez pakalpojuma atslēgas nevienu neidentificē"),
    "event order per data subject": "notikumu secība katram datu subjektam",
    "apply only the newest state of a subject that events carry":
        "no notikumos nodotajiem datu subjekta stāvokļiem piemērot tikai jaunāko",
    "until the subject is erased; a keyed hash that names no one by itself":
        "līdz datu subjekta dzēšanai; ar atslēgu veidota jaucējvērtība, kas pati par sevi nevienu neidentificē",
    "event counters per data subject": "notikumu skaitītāji katram datu subjektam",
    "number the events about each subject in the order they happened":
        "numurēt notikumus par katru datu subjektu to norises secībā",
    "until the service is retired; a keyed hash that names no one by itself":
        "visu pakalpojuma darbības laiku; ar atslēgu veidota jaucējvērtība, kas pati par sevi nevienu neidentificē",
    "messages to processors": "ziņojumi apstrādātājiem",
    "send each processor what it needs for its part of the contract, reliably":
        "uzticami nosūtīt katram apstrādātājam to, kas tam vajadzīgs savas līguma daļas izpildei",
    "delivery (failed messages: 90 days after creation)":
        "piegādes (nepiegādātiem ziņojumiem: 90 dienas pēc izveides)",
    "processors' confirmations": "apstrādātāju apstiprinājumi",
    "know what each processor did with the data we sent it":
        "zināt, ko katrs apstrādātājs ir darījis ar tam nosūtītajiem datiem",
    "receipt": "saņemšanas",
    # marketing
    "contact details for marketing": "kontaktinformācija mārketingam",
    "send offers to those who consented, in their language":
        "sūtīt piedāvājumus tiem, kas devuši piekrišanu, viņu valodā",
    ("until the holder's last entry, for three years once nothing is consented to (setting ledger_retention_days); "
     "a customer's while the account is open"):
        ("līdz personas pēdējam ierakstam un vēl trīs gadus pēc tā, ja vairs nav spēkā nevienas piekrišanas "
         "(iestatījums ledger_retention_days); klienta dati — kamēr viņa konts ir atvērts"),
    "consent ledger": "piekrišanu reģistrs",
    "show when, how and to which wording each consent was given or withdrawn (Art. 7(1))":
        ("uzskatāmi parādīt, kad, kā un ar kādu formulējumu katra piekrišana tika dota vai atsaukta "
         "(VDAR 7. panta 1. punkts)"),
    "e-mail consents awaiting confirmation": "e-pasta piekrišanas, kas gaida apstiprinājumu",
    "confirm a new e-mail consent by the link mailed to the address (double opt-in)":
        ("apstiprināt jaunu e-pasta piekrišanu ar saiti, kas nosūtīta uz šo adresi "
         "(dubultā apstiprināšana jeb double opt-in)"),
    "the request (setting confirmation_ttl_s)": "pieprasījuma (iestatījums confirmation_ttl_s)",
    "objections": "iebildumi",
    "stop direct marketing or profiling for whoever objected (Art. 21)":
        "pārtraukt tiešo mārketingu vai profilēšanu attiecībā uz ikvienu, kas iebildis (VDAR 21. pants)",
    "until the person consents afresh or is erased":
        "līdz persona no jauna dod piekrišanu vai tās dati tiek dzēsti",
    "preference profile": "preferenču profils",
    "offers that match what the customer buys (categories, frequency, spend)":
        "piedāvājumi, kas atbilst tam, ko klients pērk (kategorijas, biežums, tēriņi)",
    "until the consent is withdrawn or the customer erased":
        "līdz piekrišanas atsaukšanai vai klienta datu dzēšanai",
    "campaign deliveries": "kampaņu nosūtījumi",
    "send each campaign once to each recipient, and show whom it reached":
        "nosūtīt katru kampaņu katram adresātam vienu reizi un parādīt, ko tā sasniegusi",
    "the send (setting delivery_retention_days)": "nosūtīšanas (iestatījums delivery_retention_days)",
    "suppressed addresses": "bloķētās adreses",
    "never market to an erased e-mail address or phone number without fresh consent":
        "nekad bez jaunas piekrišanas nesūtīt mārketinga ziņas uz dzēstu e-pasta adresi vai tālruņa numuru",
    "until its holder consents afresh; a keyed hash that names no one without the service's key":
        ("līdz adreses īpašnieks no jauna dod piekrišanu; ar atslēgu veidota jaucējvērtība, kas bez pakalpojuma "
         "atslēgas nevienu neidentificē"),
    "account for every staff look at or change of a customer's consents":
        "atskaitīties par katru gadījumu, kad darbinieks skata vai maina klienta piekrišanas",
    "mail to customers": "e-pasta vēstules klientiem",
    "mail the double opt-in link": "nosūtīt dubultās apstiprināšanas saiti pa e-pastu",
    # orders
    "contact details on orders": "kontaktinformācija pasūtījumos",
    "take, deliver and support the order; reach the customer about it":
        "pieņemt, piegādāt un apkalpot pasūtījumu; sazināties ar klientu par to",
    "until the order, until the customer's erasure; a guest's for three years":
        "kopā ar pasūtījumu līdz klienta datu dzēšanai; pircēja bez konta dati — trīs gadus",
    "delivery address": "piegādes adrese",
    "deliver the order to the customer": "piegādāt pasūtījumu klientam",
    "purchase history": "pirkumu vēsture",
    "the purchase history and summary the customer reads; the fiscal record of a paid order":
        "pirkumu vēsture un kopsavilkums, ko klients redz; apmaksāta pasūtījuma grāmatvedības ieraksts",
    "payment of the order": "pasūtījuma apmaksas",
    "order amounts and payment": "pasūtījuma summas un apmaksa",
    "charge, refund and account for the order":
        "iekasēt un atmaksāt naudu par pasūtījumu un uzskaitīt to grāmatvedībā",
    "invoices": "rēķini",
    "the invoice accounting law requires for a paid order":
        "rēķins, kas apmaksātam pasūtījumam jāizraksta saskaņā ar grāmatvedības tiesību aktiem",
    "shipments sent to carriers": "pārvadātājiem nodotie sūtījumi",
    "follow the parcel the chosen carrier delivers": "izsekot sūtījumam, ko piegādā izvēlētais pārvadātājs",
    "complaints": "sūdzības",
    "handle consumer complaints and disputes": "izskatīt patērētāju sūdzības un strīdus",
    "until resolution, for the limitation period (setting complaint_hold_days)":
        "līdz atrisināšanai un pēc tam vēl noilguma termiņu (iestatījums complaint_hold_days)",
    "checkout retries": "atkārtoti pasūtījuma noformēšanas mēģinājumi",
    "answer a repeated checkout with the same order instead of a second one":
        "uz atkārtotu pasūtījuma noformēšanu atbildēt ar to pašu pasūtījumu, nevis izveidot otru",
    "the checkout": "pasūtījuma noformēšanas",
    "erasures held back": "atliktie dzēšanas pieprasījumi",
    "complete an erasure when the complaint or delivery that holds it ends":
        "pabeigt dzēšanu, kad noslēgusies sūdzības izskatīšana vai piegāde, kuras dēļ tā atlikta",
    "until the erasure is completed": "līdz dzēšanas pabeigšanai",
    "account for every staff look at a customer's orders":
        "atskaitīties par katru gadījumu, kad darbinieks skata klienta pasūtījumus",
    # payments
    "customer at the payment provider": "klients maksājumu pakalpojumu sniedzēja sistēmā",
    "charge a saved card without holding card data": "iekasēt maksājumu no saglabātas kartes, neglabājot kartes datus",
    "until the customer removes it, or until the customer's erasure":
        "līdz klients to noņem vai līdz klienta datu dzēšanai",
    "saved cards (tokens, brand, last four digits, expiry)":
        "saglabātās kartes (pilnvaras jeb token, zīmols, pēdējie četri cipari, derīguma termiņš)",
    "pay with a saved card and charge the membership": "maksāt ar saglabātu karti un iekasēt dalības maksu",
    "payments": "maksājumi",
    "take and account for payments of orders and memberships":
        "pieņemt pasūtījumu un dalības maksājumus un uzskaitīt tos grāmatvedībā",
    "the payment": "maksājuma",
    "card used for a payment": "maksājumā izmantotā karte",
    "show the customer which card paid": "parādīt klientam, ar kuru karti samaksāts",
    "until the payment, until the customer's erasure": "kopā ar maksājumu līdz klienta datu dzēšanai",
    "refunds": "atmaksas",
    "return money to the card and account for it": "atmaksāt naudu uz karti un uzskaitīt to grāmatvedībā",
    "memberships": "dalības",
    "bill the monthly membership and tell the customer about it":
        "iekasēt ikmēneša dalības maksu un informēt par to klientu",
    "payment disputes (chargebacks)": "maksājumu strīdi (kartes maksājumu apstrīdējumi)",
    "answer a chargeback; hold the payment data while it is open":
        "atbildēt uz kartes maksājuma apstrīdējumu; kamēr tas nav slēgts, saglabāt maksājuma datus",
    "until the payment": "kopā ar maksājumu",
    "complete an erasure when the chargeback that holds it is closed":
        "pabeigt dzēšanu, kad slēgts kartes maksājuma apstrīdējums, kura dēļ tā atlikta",
    # privacy
    "data-subject requests": "datu subjektu pieprasījumi",
    "carry out access, erasure, objection and withdrawal requests, and show how each was handled":
        ("izpildīt piekļuves, dzēšanas, iebildumu un piekrišanas atsaukuma pieprasījumus un parādīt, "
         "kā katrs no tiem izskatīts"),
    "the request is received": "pieprasījuma saņemšanas",
    "outcomes of each participant": "katra iesaistītā dalībnieka rezultāti",
    "show the requester and staff what each part of the shop and each processor did":
        "parādīt pieprasījuma iesniedzējam un darbiniekiem, ko darījusi katra veikala daļa un katrs apstrādātājs",
    "exports being delivered": "piegādē esošie datu eksporti",
    "deliver a copy of the requester's data (Art. 15, 20)":
        "izsniegt pieprasījuma iesniedzējam viņa datu kopiju (VDAR 15. un 20. pants)",
    "the export is completed (setting export_link_ttl_s)": "eksporta pabeigšanas (iestatījums export_link_ttl_s)",
    "guests' one-time codes": "pircēju bez konta vienreizējie kodi",
    "verify that a guest holds the address before their request runs or their export is opened":
        ("pārbaudīt, vai adrese pieder pircējam bez konta, pirms tiek izpildīts viņa pieprasījums "
         "vai atvērts viņa datu eksports"),
    "the code is made (it works 30 minutes)": "koda izveides (tas ir derīgs 30 minūtes)",
    "mail to requesters": "e-pasta vēstules pieprasījumu iesniedzējiem",
    "tell the requester of receipt, extension and outcome":
        "informēt pieprasījuma iesniedzēju par pieprasījuma saņemšanu, termiņa pagarināšanu un rezultātu",
    "audit log": "audita žurnāls",
    ("account for every staff look at personal data and every step of every data-subject request, "
     "tamper-evident (a hash chain)"):
        ("atskaitīties par katru gadījumu, kad darbinieks skata personas datus, un par katru soli katra datu "
         "subjekta pieprasījuma izpildē tā, ka jebkura grozīšana ir pamanāma (jaucējvērtību ķēde)"),
    "the entry is written": "ieraksta izveides",
    "audit entries being chained": "audita ieraksti, kas tiek pievienoti ķēdei",
    "the audit log's entries until the chainer appends them (moments)":
        "audita žurnāla ieraksti, līdz ķēdes veidotājs tos pievieno ķēdei (dažus mirkļus)",
    # processors
    "Local sandbox of a parcel carrier (courier to the door): receives shipments (policy P13).":
        "Paku pārvadātāja (kurjerpiegāde līdz durvīm) lokālā testa vide: saņem sūtījumus (politikas punkts P13).",
    "name": "vārds",
    "phone": "tālrunis",
    "e-mail": "e-pasts",
    "parcel contents": "sūtījuma saturs",
    "Local sandbox of a parcel-locker company: receives shipments to lockers (policy P13).":
        "Pakomātu uzņēmuma lokālā testa vide: saņem sūtījumus uz pakomātiem (politikas punkts P13).",
    "parcel locker address": "pakomāta adrese",
    "Local sandbox of the outsourced accountant: receives invoices (policy P14).":
        "Ārpakalpojuma grāmatveža lokālā testa vide: saņem rēķinus (politikas punkts P14).",
    "billing address": "norēķinu adrese",
    "invoice lines": "rēķina rindas",
    "totals and VAT": "kopsummas un PVN",
    "Local sandbox of the hosting provider: receives erasure and export requests (policy P15, P18).":
        ("Hostinga pakalpojumu sniedzēja lokālā testa vide: saņem dzēšanas un eksporta pieprasījumus "
         "(politikas punkti P15, P18)."),
    "backups of every service's data": "visu pakalpojumu datu rezerves kopijas",
    "Local sandbox of the SMS gateway: sends marketing texts to those who consented (policy P28).":
        ("Īsziņu vārtejas lokālā testa vide: sūta mārketinga īsziņas tiem, kas devuši piekrišanu "
         "(politikas punkts P28)."),
    "phone number": "tālruņa numurs",
    "text of the message": "ziņojuma teksts",
    "Takes card payments, saved cards for memberships and refunds (a Stripe-compatible API)":
        ("Pieņem maksājumus ar karti, saglabā kartes dalības maksām un veic atmaksas "
         "(ar Stripe saderīgs API)"),
    "card details (entered at the provider, never at the shop)":
        "kartes dati (tos ievada pakalpojumu sniedzēja vietnē, nekad ne veikalā)",
    "amounts paid and refunded": "samaksātās un atmaksātās summas",
    "the shop's reference of the customer": "klienta identifikators veikalā",
    "Relays the shop's e-mail: confirmations, notices, offers to those who consent":
        ("Pārsūta veikala e-pasta vēstules: apstiprinājumus, paziņojumus, piedāvājumus tiem, "
         "kas devuši piekrišanu"),
    "e-mail address": "e-pasta adrese",
    # security measures
    ("Card numbers and security codes go from the customer's browser straight to the payment service provider; "
     "our services take only its tokens and refuse any request that carries a card number"):
        ("Kartes numuri un drošības kodi no klienta pārlūka nonāk tieši pie maksājumu pakalpojumu sniedzēja; "
         "mūsu pakalpojumi pieņem tikai tā pilnvaras (token) un noraida jebkuru pieprasījumu, kurā ir kartes numurs"),
    ("Every request is authenticated with a signed access token; signing out, ending a session or closing the "
     "account stops its tokens in every service at once"):
        ("Katrs pieprasījums tiek autentificēts ar parakstītu piekļuves pilnvaru (token); izejot no konta, beidzot "
         "sesiju vai slēdzot kontu, attiecīgās pilnvaras uzreiz kļūst nederīgas visos pakalpojumos"),
    "Staff see only what their role needs (support, accounting, marketing, admin)":
        "Darbinieki redz tikai to, kas vajadzīgs viņu lomai (atbalsts, grāmatvedība, mārketings, administrēšana)",
    ("Every staff look at personal data and every step of every request about it is written, with who and why, "
     "to an append-only audit log whose hash chain shows any entry changed or removed"):
        ("Katra darbinieka ieskatīšanās personas datos un katrs solis katra ar tiem saistītā pieprasījuma izpildē "
         "tiek ierakstīts, norādot, kas un kāpēc, audita žurnālā, kuru var tikai papildināt un kura jaucējvērtību "
         "ķēde atklāj jebkura ieraksta grozīšanu vai dzēšanu"),
    "Passwords are kept only as Argon2id hashes": "Paroles tiek glabātas tikai kā Argon2id jaucējvērtības",
    ("Messages to processors are signed (Standard Webhooks), and their answers are checked in constant time "
     "within a time window"):
        ("Ziņojumi apstrādātājiem tiek parakstīti (Standard Webhooks), un to atbildes tiek pārbaudītas "
         "konstantā laikā un tikai noteiktā laika logā"),
    "Logs never carry personal data or card numbers unredacted":
        "Žurnālos nekad nenonāk neaizklāti personas dati vai kartes numuri",
    ("A change and the messages it causes are written in one transaction, so a failure leaves nothing half-done "
     "and nothing is lost"):
        ("Izmaiņas un to izraisītie ziņojumi tiek ierakstīti vienā transakcijā, tāpēc kļūme neatstāj neko "
         "nepabeigtu un nekas netiek zaudēts"),
    "Each retention period is kept by a scheduled sweep, not by hand":
        "Katra glabāšanas termiņa ievērošanu nodrošina ieplānota automātiska datu tīrīšana, nevis manuāla darbība",
    "Secrets come from the environment, never from the code":
        "Slepenie dati (atslēgas, paroles) tiek ņemti no izpildes vides, nekad no programmas koda",
}


def needed() -> list[str]:
    """Every string the notice translates, as the code declares it now."""
    from services.privacy.records import build, code_inventories
    from shared.webhooks.registry import PartnerRegistry
    record = build(code_inventories(), PartnerRegistry.load())
    found: list[str] = []
    for a in record.activities:
        after = a.retention.after if a.retention.period_days is not None else f"until {a.retention.after}"
        found += [a.category, a.purpose, after]
    for p in record.processors:
        found += [p.description, *p.data_categories]
    found += [m.measure for m in record.security_measures]
    return list(dict.fromkeys(found))


if __name__ == "__main__":
    for text in needed():
        if text not in LATVIAN:
            print(repr(text))
