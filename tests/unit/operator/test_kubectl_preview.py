"""The preview table of `kubectl convergence preview`: what each row's DETAILS say."""

from __future__ import annotations

from convergence.operator.kubectl.preview import table


def test_a_failed_nested_stack_updated_in_place_says_why() -> None:
    status = {
        "operation": "update",
        "stack": "app",
        "message": "1 updated",
        "updated": [
            {
                "name": "db",
                "type": "OS::Heat::Stack",
                "properties": [],
                "reason": "it FAILED: its type updates it in place",
            },
            {"name": "web", "type": "OS::Heat::TestResource", "properties": ["value"]},
        ],
    }
    rows = {line.split()[0]: line for line in table(status).splitlines()[1:] if line.strip()}
    assert rows["db"].endswith("it FAILED: its type updates it in place"), rows["db"]
    assert rows["web"].endswith("changes value"), rows["web"]
