"""loads_json: the one reader of JSON that input files, predict's JSONL and
the server's request bodies share."""

import json

import pytest

from spacy_spert.io.validation import JSONValueError, loads_json


@pytest.mark.parametrize(
    "text,where,syntax,words",
    [
        ('{"a": [1, {"b": "x\\ud800"}]}', "a[1].b", False, "unpaired surrogate U+D800 (at character 1)"),
        ('{"a": 1, "\\udfff": 2}', "a field name in the top level", False, "unpaired surrogate U+DFFF"),
        ('[{"k": 0}, {"\\ud800": 0}]', "a field name in [1]", False, "unpaired surrogate U+D800"),
        ('"\\ud800"', "", False, "unpaired surrogate"),
        ('{"x": NaN}', "", True, "NaN is not a JSON value"),
        ('{"x": -Infinity}', "", True, "-Infinity is not a JSON value"),
        ('{"x": 1e999}', "", False, 'the number "1e999" is out of range'),
        ('{"x": ' + "9" * 4301 + "}", "", False, "an integer of 4301 digits, more than the limit of 4300"),
        ("[" * 101 + "]" * 101, "", True, "nested too deeply: more than 100 levels"),
        ("[" * 100_000 + "]" * 100_000, "", True, "nested too deeply: more than 100 levels"),
    ],
)
def test_loads_json_refuses_naming_the_value(text, where, syntax, words):
    with pytest.raises(JSONValueError) as info:
        loads_json(text)
    assert info.value.where == where
    assert info.value.syntax is syntax
    assert words in str(info.value)
    assert str(info.value) == (f"{where}: {info.value.reason}" if where else info.value.reason)


def test_loads_json_names_the_first_problem_in_document_order():
    with pytest.raises(JSONValueError, match=r"^a\[0\]: .*U\+D800"):
        loads_json('{"a": ["\\ud800", "\\udfff"], "b": "\\udc00"}')


def test_loads_json_reads_what_it_can_write_back():
    text = '{"a": [1, -2.5, "é😀", {"b": null, "c": true}], "d": ' + "9" * 4300 + "}"
    value = loads_json(text)
    assert value == json.loads(text)
    assert loads_json("[" * 100 + "]" * 100) == json.loads("[" * 100 + "]" * 100)


def test_not_json_is_a_json_decode_error():
    with pytest.raises(json.JSONDecodeError):
        loads_json('{"a": }')
