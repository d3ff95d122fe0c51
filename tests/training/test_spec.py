from pathlib import Path

import pytest

from training.spec import Gates, SpecError, available, load_spec, load_spec_file


def test_shipped_specs_load() -> None:
    # Every spec in training/specs/ loads (a third model is a file there, not a test edit).
    names = available()
    assert {"potability", "wqi"} <= set(names) and names == sorted(names)
    assert [load_spec(name).name for name in names] == names
    wqi = load_spec("wqi")
    assert wqi.features == ("pH", "turbidity", "tds", "temperature", "hour_of_day")
    assert wqi.label["function"] == "ccme_wqi"
    assert load_spec("potability").nullable == ("ph", "Sulfate", "Trihalomethanes")


def test_unknown_model_names_the_known_ones() -> None:
    with pytest.raises(SpecError, match=r"unknown model 'nope'") as raised:
        load_spec("nope")
    assert f"(known: {', '.join(available())})" in str(raised.value)


def test_malformed_spec_is_a_spec_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[model]\nname = "x"\ntask = "clustering"\n')
    with pytest.raises(SpecError, match=r"bad\.toml"):
        load_spec_file(bad)


def test_nullable_must_be_a_feature(tmp_path: Path) -> None:
    text = load_spec("potability").source.read_text()
    bad = tmp_path / "p.toml"
    bad.write_text(text.replace('nullable_features = ["ph"', 'nullable_features = ["colour"'))
    with pytest.raises(SpecError, match="colour"):
        load_spec_file(bad)


def test_gates() -> None:
    gates = Gates("rmse", False, minimum={"r2": 0.1}, maximum={"rmse": 10.0})
    assert gates.failures({"rmse": 9.0, "r2": 0.2}) == []
    assert len(gates.failures({"rmse": 11.0, "r2": 0.0})) == 2
    assert gates.failures({"rmse": 9.0}) == ["r2=None is below the minimum 0.1"]
    assert gates.better_or_equal(8.0, 9.0) and not gates.better_or_equal(9.5, 9.0)


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ('primary = "roc_auc"', 'primary = "rmse"', r"unknown metric\(s\) \['rmse'\]"),
        ('kind = "binary_classification"', 'kind = "banded_regression"',
         "kind for a binary model is 'binary_classification'"),
        ('expectations = "potability.json"', 'expectations = "nope.json"', "nope.json does not"),
    ],
)  # fmt: skip
def test_spec_mistakes_are_caught_before_training(
    tmp_path: Path, old: str, new: str, message: str
) -> None:
    text = load_spec("potability").source.read_text()
    assert old in text
    bad = tmp_path / "p.toml"
    bad.write_text(text.replace(old, new))
    with pytest.raises(SpecError, match=message):
        load_spec_file(bad)
