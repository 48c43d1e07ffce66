"""Programme rules: each rule is tested on its own (the test id quotes the rule's source)."""

import pytest
import yaml

from bot.errors import ContentError
from bot.programmes import (CANNOT_TELL, FACTS, LIKELY_ELIGIBLE, LIKELY_NOT_ELIGIBLE, assess, assess_country,
                            load_all, load_country)

PROGRAMMES = load_all()
REQUIRED_COUNTRIES = {"de", "gb", "be", "nl", "fr", "at", "ch", "ly", "ne", "ma"}


def _values(fact):
    allowed = FACTS[fact]
    return [True, False] if allowed is bool else (["xx", "yy"] if allowed is str else list(allowed))


def _satisfying(rule):
    """A value for which the rule passes (None when every value fails it)."""
    for value in _values(rule.fact):
        if rule.holds(value) == (rule.effect == "requires"):
            return value
    return None


def _failing(rule):
    for value in _values(rule.fact):
        if rule.holds(value) != (rule.effect == "requires"):
            return value
    return None


def _rule_cases():
    for country, programmes in PROGRAMMES.items():
        for programme in programmes:
            for number, rule in enumerate(programme.rules, start=1):
                source = f"{rule.source['name']} {rule.source.get('year') or rule.source.get('accessed')}"
                yield pytest.param(programme, rule, id=f"{programme.id}-rule{number}-[{source}]")


def test_required_countries_are_covered():
    assert REQUIRED_COUNTRIES <= set(PROGRAMMES)
    assert all(PROGRAMMES[c] for c in REQUIRED_COUNTRIES)


@pytest.mark.parametrize("programme, rule", list(_rule_cases()))
def test_each_rule_decides_on_its_own(programme, rule):
    facts = {}
    for other in programme.rules:
        if other.fact != rule.fact:
            value = _satisfying(other)
            if value is not None:
                facts.setdefault(other.fact, value)
    failing = _failing(rule)
    assert failing is not None, "a rule that nobody can fail checks nothing"
    result = assess(programme, {**facts, rule.fact: failing})
    assert result.outcome == LIKELY_NOT_ELIGIBLE
    assert rule in result.reasons
    unknown = assess(programme, {k: v for k, v in facts.items() if k != rule.fact})
    if unknown.outcome != LIKELY_NOT_ELIGIBLE:
        assert unknown.outcome == CANNOT_TELL and rule.fact in unknown.unknown


@pytest.mark.parametrize("country", sorted(REQUIRED_COUNTRIES))
def test_every_programme_states_consequences_and_sources(country):
    for programme in PROGRAMMES[country]:
        assert programme.consequences or programme.conditions, programme.id
        assert programme.sources, programme.id


def test_nothing_known_means_cannot_tell():
    for programmes in PROGRAMMES.values():
        for programme in programmes:
            if programme.rules:
                assert assess(programme, {}).outcome == CANNOT_TELL


def test_a_programme_without_sourced_rules_is_never_likely_eligible():
    ruleless = [p for programmes in PROGRAMMES.values() for p in programmes if not p.rules]
    assert ruleless, "the data has programmes whose rules our sources do not give (e.g. gb_frs)"
    everything = {"situation": "asylum_refused", "own_funds": False, "prison_sentence": "none", "in_detention": False,
                  "assisted_before": False, "eu_national": False, "visa_required": True, "children": False}
    for programme in ruleless:
        assert assess(programme, everything).outcome == CANNOT_TELL, programme.id


def test_germany_refused_asylum_without_money():
    facts = {"country_of_stay": "de", "situation": "asylum_refused", "own_funds": False}
    outcomes = {a.programme.id: a.outcome for a in assess_country(facts, PROGRAMMES)}
    assert outcomes["de_reag_garp"] == LIKELY_ELIGIBLE
    assert outcomes["de_starthilfeplus"] == LIKELY_ELIGIBLE
    starthilfe = next(p for p in PROGRAMMES["de"] if p.id == "de_starthilfeplus")
    assert any("withdraw" in c.lower() for c in starthilfe.consequences)


def test_uk_long_sentence_is_likely_not_eligible_for_the_voluntary_returns_service():
    facts = {"country_of_stay": "gb", "prison_sentence": "12_months_or_more", "in_detention": False,
             "situation": "irregular"}
    vrs = next(a for a in assess_country(facts, PROGRAMMES) if a.programme.id == "gb_vrs")
    assert vrs.outcome == LIKELY_NOT_ELIGIBLE
    assert any(r.fact == "prison_sentence" for r in vrs.reasons)


def test_unknown_country_has_no_programmes():
    assert assess_country({"country_of_stay": "zz"}, PROGRAMMES) == []


def test_all_rules_met_is_likely_eligible():
    checked = 0
    for programmes in PROGRAMMES.values():
        for programme in programmes:
            facts = {}
            for fact in {r.fact for r in programme.rules}:
                rules = [r for r in programme.rules if r.fact == fact]
                passing = [v for v in _values(fact) if all(r.holds(v) == (r.effect == "requires") for r in rules)]
                if not passing:
                    break
                facts[fact] = passing[0]
            else:
                if programme.rules:
                    assert assess(programme, facts).outcome == LIKELY_ELIGIBLE, programme.id
                    checked += 1
    assert checked > 0


BAD = {
    "unknown fact": {"fact": "favourite_colour", "equals": True, "effect": "requires", "reason": "x",
                     "source": {"name": "s", "year": 2024}},
    "bad value": {"fact": "situation", "in": ["on_holiday"], "effect": "requires", "reason": "x",
                  "source": {"name": "s", "year": 2024}},
    "no source year": {"fact": "own_funds", "equals": True, "effect": "excludes", "reason": "x",
                       "source": {"name": "s"}},
    "bad effect": {"fact": "own_funds", "equals": True, "effect": "maybe", "reason": "x",
                   "source": {"name": "s", "year": 2024}},
}


@pytest.mark.parametrize("problem", sorted(BAD))
def test_a_bad_rule_names_the_file_and_the_programme(tmp_path, problem):
    path = tmp_path / "zz.yml"
    path.write_text(yaml.safe_dump({"country": "zz", "programmes": [{
        "id": "zz_prog", "name": "P", "operator": "O", "summary": "S",
        "sources": [{"name": "s", "year": 2024}], "rules": [BAD[problem]]}]}))
    with pytest.raises(ContentError) as info:
        load_country(path)
    assert "zz.yml" in str(info.value) and "zz_prog" in str(info.value)


def test_an_amount_without_currency_is_refused(tmp_path):
    path = tmp_path / "zz.yml"
    path.write_text(yaml.safe_dump({"country": "zz", "programmes": [{
        "id": "zz_prog", "name": "P", "operator": "O", "summary": "S", "sources": [{"name": "s", "year": 2024}],
        "includes": [{"item": "Grant", "amount": 100}]}]}))
    with pytest.raises(ContentError, match="currency"):
        load_country(path)
