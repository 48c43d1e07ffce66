import datetime as dt
import shutil

import pytest
import yaml
from sqlalchemy import select

from bot.db import Service
from bot.errors import ContentError
from bot.services import Place, find_services, import_services, read_files, resolve_place
from bot.settings import ROOT

FIXTURES = ROOT / "tests" / "fixtures" / "services"
TODAY = dt.date(2026, 11, 22)


@pytest.fixture
def directory(tmp_path):
    target = tmp_path / "services"
    shutil.copytree(FIXTURES, target)
    return target


@pytest.fixture
def loaded(db, directory):
    import_services(db, directory)
    return db


def test_import_is_idempotent(db, directory):
    first = import_services(db, directory)
    second = import_services(db, directory)
    assert (first.added, first.updated, first.removed) == (5, 0, 0)
    assert (second.added, second.updated, second.unchanged, second.removed) == (0, 0, 5, 0)


def test_import_updates_and_removes_to_match_the_files(db, directory):
    import_services(db, directory)
    data = yaml.safe_load((directory / "be.yml").read_text())
    data["services"][0]["phone"] = "+32 0 000 00 00"
    del data["services"][-1]
    (directory / "be.yml").write_text(yaml.safe_dump(data, allow_unicode=True))
    report = import_services(db, directory)
    assert (report.added, report.updated, report.removed) == (0, 1, 1)
    with db.session() as s:
        assert s.get(Service, "be-test-legal-city").phone == "+32 0 000 00 00"
        assert s.get(Service, "be-test-ghent") is None


@pytest.mark.parametrize("change, message", [
    (lambda e: e.update(types=["haircuts"]), "types"),
    (lambda e: e.update(source={"name": "no year"}), "source"),
    (lambda e: e.update(verified="last week"), "verified"),
    (lambda e: e.update(verified=12), "verified"),
    (lambda e: e.update(id="Bad Id!"), "id"),
    (lambda e: e.pop("organisation"), "organisation"),
])
def test_a_bad_entry_names_the_file_and_the_entry(directory, change, message):
    data = yaml.safe_load((directory / "be.yml").read_text())
    change(data["services"][1])
    (directory / "be.yml").write_text(yaml.safe_dump(data, allow_unicode=True))
    with pytest.raises(ContentError) as info:
        read_files(directory)
    assert "be.yml" in str(info.value) and message in str(info.value)
    assert "entry" in str(info.value)


def test_a_duplicate_id_is_refused(directory):
    data = yaml.safe_load((directory / "international.yml").read_text())
    data["services"][0]["id"] = "be-test-national"
    (directory / "international.yml").write_text(yaml.safe_dump(data))
    with pytest.raises(ContentError, match="already used"):
        read_files(directory)


@pytest.mark.parametrize("text", [
    "I need a lawyer in Brussels", "avocat à Bruxelles svp", "محامي في بروكسل", "abogado en Bruselas",
    "وکیل در بروکسل", "ጠበቓ ኣብ ብራስልስ", "Anwalt in Brüssel", "lawyer in Bruxels", "avocat brusel",
    "BRUXELLES",
])
def test_brussels_in_every_language_and_misspelt(text):
    assert resolve_place(text) == Place("be", "Brussels")


@pytest.mark.parametrize("text, country", [
    ("I am in Germany", "de"), ("je suis en Allemagne", "de"), ("أنا في ألمانيا", "de"), ("estoy en Alemania", "de"),
    ("من در آلمان هستم", "de"), ("Belgique", "be"),
])
def test_countries_in_every_language(text, country):
    place = resolve_place(text)
    assert place is not None and place.country == country and place.city is None


def test_a_city_from_our_data_that_cldr_does_not_name(loaded):
    assert resolve_place("shelter in ghent please", loaded) == Place("be", "Ghent")


@pytest.mark.parametrize("text", [
    "'; DROP TABLE services; --", '" OR 1=1 --', "<script>alert(1)</script>", "x" * 100_000, "", "   ",
    "\x00\x01", "%%%%", "Robert'); DELETE FROM services;--",
])
def test_hostile_input_finds_nothing_and_breaks_nothing(loaded, text):
    assert resolve_place(text, loaded) is None
    with loaded.session() as s:
        assert len(s.scalars(select(Service)).all()) == 5


def test_city_first_then_country_then_international(loaded):
    found = find_services(loaded, Place("be", "Brussels"), ["legal_aid"], "fr", limit=5, today=TODAY)
    assert [(f.service.id, f.scope) for f in found] == [
        ("be-test-legal-city", "city"), ("be-test-legal-city-old", "city"), ("int-test-tracing", "international")]


def test_language_spoken_comes_first_within_a_group(loaded):
    found = find_services(loaded, Place("be", "Brussels"), ["legal_aid"], "ar", limit=2, today=TODAY)
    assert [f.service.id for f in found] == ["be-test-legal-city-old", "be-test-legal-city"]


def test_old_entries_are_marked_please_check(loaded):
    found = {f.service.id: f.stale for f in find_services(loaded, Place("be", "Brussels"), ["legal_aid"], today=TODAY)}
    assert found == {"be-test-legal-city": False, "be-test-legal-city-old": True, "int-test-tracing": False}


def test_an_entry_nobody_verified_is_always_please_check(db, directory):
    data = yaml.safe_load((directory / "international.yml").read_text())
    data["services"][0]["verified"] = None
    (directory / "international.yml").write_text(yaml.safe_dump(data))
    import_services(db, directory)
    found = find_services(db, None, ["family_tracing"], today=TODAY)
    assert [(f.service.id, f.stale) for f in found] == [("int-test-tracing", True)]


def test_nothing_nearby_falls_back_to_national_and_international(loaded):
    found = find_services(loaded, Place("be", "Liège"), ["return_counselling", "family_tracing"], today=TODAY)
    assert [(f.service.id, f.scope) for f in found] == [("be-test-national", "country"), ("int-test-tracing", "international")]


def test_unknown_place_gets_international_services(loaded):
    found = find_services(loaded, None, ["legal_aid"], today=TODAY)
    assert [f.scope for f in found] == ["international"]


@pytest.mark.parametrize("text, needs", [
    ("where can I find a doctor in Brussels", ["medical"]),
    ("I need a place to sleep tonight", ["shelter"]),
    ("بدي مأوى في بروكسل", ["shelter"]),
    ("وين في طبيب", ["medical"]),
    ("je cherche une avocate", ["legal_aid"]),
    ("a lawyer and a doctor", ["legal_aid", "medical"]),
    ("where is help in Brussels", []),
    ("'; DROP TABLE services; --" * 1000, []),
])
def test_needs_are_recognised_in_any_language(directory, text, needs):
    from bot.services import detect_needs

    assert detect_needs(text, directory) == needs


def test_the_needs_file_is_not_imported_as_services(db, directory):
    assert (directory / "needs.yml").exists()
    assert import_services(db, directory).added == 5


@pytest.mark.parametrize("text, need", [
    ("where can I find a doctor in Brussels", "medical"), ("بدي مأوى في بروكسل", "shelter"),
    ("je cherche un avocat", "legal_aid"), ("necesito un abogado", "legal_aid"),
])
def test_the_real_need_words(text, need):
    from bot.services import detect_needs

    assert need in detect_needs(text)


@pytest.mark.parametrize("text, country, city", [
    ("мне нужен адвокат в Брюсселе", "be", "Brussels"), ("я сейчас в Германии", "de", None),
    ("ადვოკატი მჭირდება ბრიუსელში", "be", "Brussels"), ("გერმანიაში ვარ", "de", None)])
def test_inflected_place_names_in_russian_and_georgian(text, country, city):
    place = resolve_place(text)
    assert place is not None and (place.country, place.city) == (country, city)
