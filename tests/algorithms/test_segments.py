import pytest

from algorithms.segments import ALL, bucket, bucket_labels, segment_of
from conf.retrieval import PopularitySettings, SegmentRule

AGE = SegmentRule(attribute="age", bins=[18, 25, 35, 45, 55])
GENDER = SegmentRule(attribute="gender")


def test_integer_bins_have_inclusive_labels():
    assert bucket_labels(AGE) == ["<18", "18-24", "25-34", "35-44", "45-54", "55+"]


def test_fractional_bins_and_unit_width_bins():
    assert bucket_labels(SegmentRule(attribute="x", bins=[0.5, 1.5])) == \
        ["<0.5", "0.5-1.5", "1.5+"]
    assert bucket_labels(SegmentRule(attribute="x", bins=[1, 2, 4])) == \
        ["<1", "1", "2-3", "4+"]


@pytest.mark.parametrize(("value", "expected"), [
    ("7", "<18"), ("17.9", "<18"), ("18", "18-24"), ("24", "18-24"), ("25", "25-34"),
    (" 54 ", "45-54"), ("55", "55+"), ("99", "55+"),
    (None, "unknown"), ("", "unknown"), ("  ", "unknown"), ("n/a", "unknown"),
    ("nan", "unknown"),
])
def test_numeric_bucket_edges(value, expected):
    assert bucket(value, AGE) == expected


def test_categorical_kept_values_other_and_raw():
    rule = SegmentRule(attribute="country", values=["US", "DE"])
    assert bucket("US", rule) == "US"
    assert bucket("FR", rule) == "other"
    assert bucket(None, rule) == "unknown"
    assert bucket(" F ", GENDER) == "F"


def test_explicit_labels():
    rule = SegmentRule(attribute="age", bins=[30], labels=["young", "old"])
    assert bucket("29", rule) == "young"
    assert bucket("30", rule) == "old"


def test_segment_key_combines_rules_in_order():
    assert segment_of({"age": "31", "gender": "F", "zip": "1"}, [AGE, GENDER]) == \
        "age=25-34|gender=F"
    assert segment_of({"gender": "M"}, [GENDER, AGE]) == "gender=M|age=unknown"
    assert segment_of(None, [AGE, GENDER]) == "age=unknown|gender=unknown"
    assert segment_of({"age": "31"}, []) == ALL


@pytest.mark.parametrize("kwargs", [
    {"attribute": "age", "bins": [30, 20]},
    {"attribute": "age", "bins": [20, 20]},
    {"attribute": "age", "bins": []},
    {"attribute": "age", "bins": [20], "values": ["a"]},
    {"attribute": "age", "bins": [20], "labels": ["a"]},
    {"attribute": "age", "labels": ["a", "b"]},
    {"attribute": " "},
])
def test_bad_rules_are_refused(kwargs):
    with pytest.raises(ValueError):
        SegmentRule(**kwargs)


def test_duplicate_segment_attributes_are_refused():
    with pytest.raises(ValueError, match="distinct"):
        PopularitySettings(segments=[GENDER, GENDER])


def test_default_settings_segment_by_age_and_gender():
    cfg = PopularitySettings()
    assert segment_of({"age": "40", "gender": "M"}, cfg.segments) == "age=35-44|gender=M"


def test_segments_as_of_a_date_match_segment_of_for_every_user():
    """jobs.user_segments evaluates segment_of once per distinct combination of the rules'
    attributes and joins it back: every user gets what segment_of gives them."""
    import pyarrow as pa

    from conf import load_settings
    from jobs.user_segments import segment_table

    settings = load_settings(overrides={"lake_root": "unused"}, environ={})
    rules = settings.popularity.segments
    assert rules, "the default settings segment users"
    maps = [[("age", "31"), ("gender", "F")], [("gender", "M")], [], None,
            [("age", "17"), ("gender", "F"), ("age", "52")],  # a repeated key: the last wins
            [("age", "not a number"), ("occupation", "x")]]
    users = pa.table({"user_id": [f"u{i}" for i in range(len(maps))],
                      "attributes": pa.array(maps, pa.map_(pa.string(), pa.string()))})
    got = segment_table(users, list(rules)).to_pylist()
    assert [r["user_id"] for r in got] == [f"u{i}" for i in range(len(maps))]
    for row, attrs in zip(got, maps, strict=True):
        assert row["segment"] == segment_of(dict(attrs or []), rules), row
    assert {r["segment"] for r in segment_table(users, []).to_pylist()} == {"all"}
