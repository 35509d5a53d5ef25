"""aielower.output: the JSON text of artifact manifests."""

from __future__ import annotations

import json

from aielower.output import json_text


def test_json_text_puts_each_schedule_step_on_one_line_and_reads_back():
    data = {"format": "x/1", "schedule": {"decode": [{"op": "a", "step": 0}, {"op": "\x00item0", "step": 1}],
                                          "prefill": []}, "z": [1, 2]}
    text = json_text(data, one_line_items_of="schedule")
    assert json.loads(text) == data
    assert '   {"op": "a", "step": 0},\n' in text  # one line per step, keys sorted
    assert '"z": [\n  1,\n  2\n ]' in text  # everything else indented as before
    assert json_text(data) == json.dumps(data, indent=1, sort_keys=True) + "\n"


def test_json_text_leaves_values_of_the_one_line_key_that_are_not_lists():
    data = {"schedule": {"decode": [{"step": 0}], "note": "text", "n": 3, "d": {"a": 1}}}
    assert json.loads(json_text(data, one_line_items_of="schedule")) == data
