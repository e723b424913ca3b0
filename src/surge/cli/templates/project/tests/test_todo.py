"""The app in-process with surge.testing.TestClient: no port, a fresh in-memory store per client
(the project's .surge/ is never touched). Run with `pytest`."""

from pathlib import Path

from surge.testing import TestClient

PROJECT = Path(__file__).resolve().parents[1]


def test_a_new_todo_reaches_subscribers_of_the_inbox() -> None:
    with TestClient(PROJECT) as client:
        inbox = client.subscribe_group("todo", "inbox")
        assert inbox.state == []
        created = client.post("/todo", json={"description": "buy milk"})
        assert created.status_code == 200, created.text
        todo = created.json()
        assert todo["description"] == "buy milk"
        assert inbox.wait(lambda todos: len(todos) == 1, timeout=5) == [todo]
        assert client.get("/todo").json() == [todo]


def test_completing_and_deleting_a_todo_updates_subscribers() -> None:
    with TestClient(PROJECT) as client:
        todo = client.post("/todo", json={"description": "call mum"}).json()
        inbox = client.subscribe_group("todo", "inbox")
        done = client.put(f"/todo/{todo['id']}", json={})
        assert done.status_code == 200 and done.json()["completedAt"] is not None
        inbox.wait(lambda todos: todos[0]["completedAt"] is not None, timeout=5)
        assert client.delete(f"/todo/{todo['id']}").status_code == 200
        inbox.wait(lambda todos: todos == [], timeout=5)


def test_an_empty_description_is_refused_and_nothing_is_stored() -> None:
    with TestClient(PROJECT) as client:
        refused = client.post("/todo", json={"description": "  "})
        assert refused.status_code == 400
        assert client.get("/todo").json() == []
