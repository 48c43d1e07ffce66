"""The eligibility check and the service look-up through the web chat, in every launch language."""

import uuid

import httpx
import pytest
from babel import Locale

from bot.content import ContentStore
from bot.settings import ROOT
from tests.conftest import LAUNCH_LANGUAGES

pytestmark = pytest.mark.slow
CONTENT = ContentStore(ROOT / "data" / "content")

ELIGIBILITY = {
    "en": "can I get help to go back? I am in Germany, my asylum was refused",
    "fr": "est-ce que je peux avoir de l'aide pour rentrer ? Je suis en Allemagne, ma demande d'asile a été refusée",
    "ar": "هل يمكنني الحصول على مساعدة للعودة؟ أنا في ألمانيا وتم رفض طلب اللجوء الخاص بي",
    "es": "¿puedo recibir ayuda para volver? Estoy en Alemania, me negaron el asilo",
    "fa": "آیا می‌توانم برای برگشت کمک بگیرم؟ من در آلمان هستم و پناهندگی‌ام رد شده",
    "ti": "ንምምላስ ሓገዝ ክረክብ ይኽእል ዶ? ኣብ ጀርመን እየ ዘለኹ፡ ሕቶ ዑቕባይ ተነጺጉ",
    "ps": "ایا زه د داوطلبانه ستنېدو مرستې ته وړ یم؟ په المان کې یم، پناه مې رد شوې",
    "so": "ma u qalmaa barnaamijka ku laabashada? waxaan joogaa Jarmal, magangalyadii waa la i diiday",
    "ur": "کیا مجھے واپس جانے کے لیے مدد مل سکتی ہے؟ میں جرمنی میں ہوں، میری پناہ کی درخواست مسترد ہو گئی",
    "bn": "দেশে ফেরার জন্য কি সাহায্য পেতে পারি? আমি জার্মানিতে আছি, আমার আশ্রয়ের আবেদন বাতিল হয়েছে",
    "ru": "могу ли я получить помощь, чтобы вернуться? я в Германии, мне отказали в убежище",
    "ka": "შემიძლია დახმარება მივიღო დასაბრუნებლად? გერმანიაში ვარ, თავშესაფარზე უარი მითხრეს",
}
LAWYER = {
    "en": "I need a lawyer in Brussels",
    "fr": "j'ai besoin d'un avocat à Bruxelles",
    "ar": "أحتاج محامياً في بروكسل",
    "es": "necesito un abogado en Bruselas",
    "fa": "به یک وکیل در بروکسل نیاز دارم",
    "ti": "ኣብ ብራስልስ ጠበቓ የድልየኒ",
    "ps": "په بروسلز کې وکیل ته اړتیا لرم",
    "so": "qareen ayaan u baahanahay, Barasalis",
    "ur": "مجھے برسلز میں وکیل چاہیے",
    "bn": "ব্রাসেলস এ আমার একজন উকিল দরকার",
    "ru": "мне нужен адвокат в Брюсселе",
    "ka": "ადვოკატი მჭირდება ბრიუსელში",
}
ANSWERS = ['/inform{"situation":"asylum_refused"}', '/inform{"own_funds":"no"}', '/inform{"assisted_before":"no"}',
           '/inform{"in_detention":"no"}', '/inform{"prison_sentence":"none"}']


def say(servers, user, **body):
    response = httpx.post(f"{servers['url']}/webchat/api/message", json={"user_id": user, **body}, timeout=60)
    assert response.status_code == 200, response.text
    return response.json()["replies"]


def text(response, lang, **args):
    return CONTENT.render(response, lang, args).text


@pytest.mark.parametrize("lang", LAUNCH_LANGUAGES)
def test_eligibility_check_germany_asylum_refused(servers, lang):
    user = uuid.uuid4().hex
    say(servers, user, payload=f'/change_language{{"language":"{lang}"}}')
    replies = say(servers, user, text=ELIGIBILITY[lang])
    # The country named in the question is used: the next question is the nationality.
    assert [r["text"] for r in replies] == [text("utter_eligibility_intro", lang), text("utter_ask_nationality", lang)]
    afghanistan = Locale.parse(lang).territories["AF"]
    assert say(servers, user, text=afghanistan)[0]["text"] == text("utter_ask_situation", lang)
    for answer in ANSWERS:
        replies = say(servers, user, payload=answer)
    assert replies[0]["text"] == text("utter_ask_children", lang)
    result = say(servers, user, payload='/inform{"children":"no"}')
    texts = [r["text"] for r in result]
    assert texts[0] == text("utter_eligibility_result_header", lang, country=Locale.parse(lang).territories["DE"])
    likely = text("utter_programme_likely_eligible", lang).split("{")[0].strip()
    assert [t for t in texts if "REAG/GARP" in t] and [t for t in texts if "StarthilfePlus" in t]
    assert all(t.startswith(("REAG", "StarthilfePlus")) or t in texts[:1] or t == texts[-1] for t in texts)
    assert texts[-1] == text("utter_eligibility_alternatives", lang)
    assert "returningfromgermany.de" in "\n".join(texts)  # sources are shown
    assert likely == "" or any(likely in t for t in texts)


@pytest.mark.parametrize("lang", LAUNCH_LANGUAGES)
def test_stop_ends_the_check(servers, lang):
    user = uuid.uuid4().hex
    say(servers, user, payload=f'/change_language{{"language":"{lang}"}}')
    say(servers, user, text=ELIGIBILITY[lang])
    assert [r["text"] for r in say(servers, user, text="/stop")] == [text("utter_eligibility_stopped", lang)]


@pytest.mark.parametrize("lang", LAUNCH_LANGUAGES)
def test_a_lawyer_in_brussels(servers, lang):
    user = uuid.uuid4().hex
    say(servers, user, payload=f'/change_language{{"language":"{lang}"}}')
    replies = say(servers, user, text=LAWYER[lang])
    zone = Locale.parse(lang).time_zones.get("Europe/Brussels")
    brussels = zone.get("city") if zone is not None and zone.get("city") else "Brussels"
    assert replies[0]["text"] == text("utter_services_found", lang, place=brussels)
    listed = [r["text"] for r in replies[1:]]
    assert len(listed) == 3 and all(t.startswith("• ") for t in listed)
    source_label = text("utter_service_source", lang)
    assert all(f"{source_label}: " in t for t in listed)
    assert any("Droits sans toit" in t or "Juridische Bijstand" in t or "Legal" in t for t in listed)


def test_an_earlier_answer_can_be_corrected_with_its_button(servers):
    lang = "fr"
    user = uuid.uuid4().hex
    say(servers, user, payload=f'/change_language{{"language":"{lang}"}}')
    say(servers, user, text=ELIGIBILITY[lang])
    say(servers, user, text="Afghanistan")
    for answer in ANSWERS:
        say(servers, user, payload=answer)
    corrected = say(servers, user, payload='/inform{"own_funds":"yes"}')  # "actually, I do have money"
    assert corrected[0]["text"] == text("utter_ask_children", lang)  # the form goes on where it was
    texts = [r["text"] for r in say(servers, user, payload='/inform{"children":"no"}')]
    reag = next(t for t in texts if t.startswith("REAG/GARP")).splitlines()[0]

    def verdict(response):  # the template's first line after "{programme} ({operator})"
        return CONTENT.languages[lang].responses[response]["text"].splitlines()[0].rsplit("}", 1)[-1]

    assert reag.endswith(verdict("utter_programme_likely_not_eligible"))
    assert not reag.endswith(verdict("utter_programme_likely_eligible"))
