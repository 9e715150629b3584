"""Prompt templates: CreatePromptTemplate / GetPromptTemplate / ListPromptTemplates /
SetPromptTemplateAlias in the store (numbering, also under concurrency; checking with
llmops.core.prompt_templates; paging), through the gRPC servicer, and from the CLI."""

from __future__ import annotations

import asyncio
import datetime as dt
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from typer.testing import CliRunner

from llmops.cli.local import free_port
from llmops.cli.main import app
from llmops.cli.registry_commands import template_row, template_selector
from llmops.contracts.rpc.registry.v1 import registry_pb2 as pb
from llmops.contracts.rpc.registry.v1 import registry_pb2_grpc
from llmops.core.grpc_server import GrpcServer
from llmops.core.prompt_templates import TemplateError
from llmops.core.settings import AuthSettings
from llmops.registry.domain.errors import InvalidArgument, NotFound
from llmops.registry.domain.models import PromptTemplateSpec
from llmops.registry.grpc_server import RegistryServicer
from llmops.registry.registry import Registry
from llmops.registry.store import SqlRegistryStore

T0 = dt.datetime(2025, 6, 1, 12, 0, tzinfo=dt.UTC)
QA = (
    "Answer from the context.\n{% for d in documents %}[{{ d.index }}] {{ d.text }}\n{% endfor %}"
    "Q: {{ question }}"
)


def _spec(name: str = "qa", template: str = QA, **fields: Any) -> PromptTemplateSpec:
    fields.setdefault("variables", ("question",))
    return PromptTemplateSpec(name=name, template=template, **fields)


@pytest.fixture
def url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path}/registry.sqlite"


@pytest.fixture
def store(url: str) -> Iterator[SqlRegistryStore]:
    s = SqlRegistryStore(url)
    yield s
    s.close()


# --- in the store ------------------------------------------------------------------------------


def test_versions_number_from_one_per_name(store: SqlRegistryStore) -> None:
    created = [store.create_prompt_template(_spec(description=f"v{i}"), now=T0) for i in (1, 2, 3)]
    assert [t.version for t in created] == [1, 2, 3]
    assert (
        store.create_prompt_template(_spec("summary", "Summarise: {{ text }}", variables=("text",))).version
        == 1
    )
    first = store.get_prompt_template("qa", version=1)
    assert (first.name, first.template, first.variables, first.description, first.created_at) == (
        "qa",
        QA,
        ("question",),
        "v1",
        T0,
    )
    assert store.get_prompt_template("qa").version == 3
    # Templates announce nothing: serving reads them when it needs them.
    assert store.outbox.pending() == []


def test_a_version_keeps_its_system_text_sorted_variables_and_author(store: SqlRegistryStore) -> None:
    created = store.create_prompt_template(
        _spec(
            template="{{ tone }} answer to {{ question }}",
            system="You are {{ persona }}.",
            variables=("question", "tone", "persona"),
            created_by="alice",
        )
    )
    assert (created.system, created.variables, created.created_by) == (
        "You are {{ persona }}.",
        ("persona", "question", "tone"),
        "alice",
    )
    assert store.get_prompt_template("qa") == created


@pytest.mark.parametrize(
    ("spec", "complaint"),
    [
        (_spec(variables=()), "undeclared variable(s) question"),
        (_spec(system="Be {{ mood }}."), "undeclared variable(s) mood"),
        (_spec(template="{{ question "), "template does not parse"),
        (_spec(template="  "), "template is empty"),
        (_spec(variables=("question", "documents")), "variable 'documents' is reserved"),
        (_spec(variables=("question", "question")), "declared more than once: question"),
        (_spec(variables=("question", "two words")), "variable name 'two words' is not an identifier"),
        (_spec(name="my template"), "name 'my template' is not a valid template name"),
        (_spec(name=""), "name is empty: name the prompt template"),
    ],
)
def test_a_template_that_does_not_check_is_refused_naming_the_problem(
    store: SqlRegistryStore, spec: PromptTemplateSpec, complaint: str
) -> None:
    with pytest.raises(InvalidArgument) as err:
        store.create_prompt_template(spec)
    assert complaint in str(err.value)
    with pytest.raises(NotFound):
        store.get_prompt_template("qa")
    # Nothing was numbered: the next good one is version 1.
    assert store.create_prompt_template(_spec()).version == 1


def test_an_undeclared_variable_is_a_template_error(store: SqlRegistryStore) -> None:
    with pytest.raises(TemplateError, match=r"undeclared variable\(s\) audience, question"):
        store.create_prompt_template(_spec(template="{{ question }} for {{ audience }}", variables=()))


def test_get_by_number_alias_or_latest_and_not_found_says_what_was_asked(store: SqlRegistryStore) -> None:
    for _ in range(3):
        store.create_prompt_template(_spec())
    store.set_prompt_template_alias("qa", "production", 2, actor="alice")
    assert store.get_prompt_template("qa").version == 3
    assert store.get_prompt_template("qa", version=1).version == 1
    by_alias = store.get_prompt_template("qa", alias="production")
    assert (by_alias.version, by_alias.aliases) == (2, ("production",))
    with pytest.raises(NotFound, match="prompt template 'qa' has no version 9 \\(its latest is 3\\)"):
        store.get_prompt_template("qa", version=9)
    with pytest.raises(NotFound, match="prompt template 'qa' has no alias 'staging'"):
        store.get_prompt_template("qa", alias="staging")
    with pytest.raises(NotFound, match="prompt template 'nope' not found"):
        store.get_prompt_template("nope")
    with pytest.raises(InvalidArgument, match="version must be 1 or more"):
        store.get_prompt_template("qa", version=0)
    with pytest.raises(InvalidArgument, match="version or alias, not both"):
        store.get_prompt_template("qa", version=1, alias="production")


def test_aliases_point_at_existing_versions_and_move(store: SqlRegistryStore) -> None:
    store.create_prompt_template(_spec())
    store.create_prompt_template(_spec())
    with pytest.raises(NotFound, match="prompt template 'qa' has no version 3"):
        store.set_prompt_template_alias("qa", "production", 3)
    with pytest.raises(NotFound, match="'ghost' not found"):
        store.set_prompt_template_alias("ghost", "production", 1)
    with pytest.raises(InvalidArgument, match="alias 'pro duction' is not a valid alias"):
        store.set_prompt_template_alias("qa", "pro duction", 1)
    assert store.set_prompt_template_alias("qa", "production", 1).aliases == ("production",)
    store.set_prompt_template_alias("qa", "staging", 2)
    moved = store.set_prompt_template_alias("qa", "production", 2)
    assert (moved.version, moved.aliases) == (2, ("production", "staging"))
    assert store.get_prompt_template("qa", version=1).aliases == ()


def test_listing_pages_the_versions_of_one_name_newest_first(store: SqlRegistryStore) -> None:
    for _ in range(5):
        store.create_prompt_template(_spec())
    store.create_prompt_template(_spec("other", "{{ x }}", variables=("x",)))
    store.set_prompt_template_alias("qa", "production", 4)
    seen, token, pages = [], "", 0
    while True:
        page = store.list_prompt_templates("qa", page_size=2, page_token=token)
        seen.extend((t.version, t.aliases) for t in page.items)
        pages += 1
        token = page.next_page_token
        if not token:
            break
    assert seen == [(5, ()), (4, ("production",)), (3, ()), (2, ()), (1, ())]
    assert pages == 3
    with pytest.raises(NotFound, match="'ghost' not found"):
        store.list_prompt_templates("ghost")
    with pytest.raises(InvalidArgument, match="page_token"):
        store.list_prompt_templates("qa", page_token="garbage")


def test_listing_without_a_name_pages_the_latest_version_of_every_name(store: SqlRegistryStore) -> None:
    for name, versions in (("b-summary", 2), ("a-qa", 1), ("c-chat", 3)):
        for _ in range(versions):
            store.create_prompt_template(_spec(name))
    first = store.list_prompt_templates(page_size=2)
    assert [(t.name, t.version) for t in first.items] == [("a-qa", 1), ("b-summary", 2)]
    rest = store.list_prompt_templates(page_size=2, page_token=first.next_page_token)
    assert [(t.name, t.version) for t in rest.items] == [("c-chat", 3)] and not rest.next_page_token
    # A new version replaces its name's row, in place.
    store.create_prompt_template(_spec("a-qa"))
    assert [(t.name, t.version) for t in store.list_prompt_templates().items] == [
        ("a-qa", 2),
        ("b-summary", 2),
        ("c-chat", 3),
    ]


def test_concurrent_registrations_of_one_name_never_share_a_number(url: str) -> None:
    # Two store objects (as two replicas would have) on one file, several threads each; the first
    # registrations race to create the name's row.
    stores = [SqlRegistryStore(url), SqlRegistryStore(url)]
    got: list[int] = []
    lock = threading.Lock()
    errors: list[BaseException] = []
    start = threading.Barrier(8)

    def register(i: int) -> None:
        try:
            start.wait()
            for _ in range(5):
                number = stores[i % 2].create_prompt_template(_spec()).version
                with lock:
                    got.append(number)
        except BaseException as exc:  # noqa: BLE001 - re-raised below
            errors.append(exc)

    threads = [threading.Thread(target=register, args=(i,)) for i in range(8)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        assert sorted(got) == list(range(1, 41))
        assert stores[1].get_prompt_template("qa").version == 40
    finally:
        for s in stores:
            s.close()


# --- through the gRPC servicer -----------------------------------------------------------------


@pytest.fixture
async def served(url: str) -> AsyncIterator[tuple[str, SqlRegistryStore]]:
    store = SqlRegistryStore(url)
    registry = Registry(store)
    server = GrpcServer("registry", "127.0.0.1", free_port(), AuthSettings(auth_disabled=True))
    server.add(
        registry_pb2_grpc.add_RegistryServiceServicer_to_server,
        RegistryServicer(lambda: registry),
        "llmops.registry.v1.RegistryService",
    )
    await server.start()
    await server.set_serving()
    yield server.address, store
    await server.stop(0)
    store.close()


@pytest.fixture
async def stub(
    served: tuple[str, SqlRegistryStore],
) -> AsyncIterator[registry_pb2_grpc.RegistryServiceStub]:
    async with grpc.aio.insecure_channel(served[0]) as channel:
        yield registry_pb2_grpc.RegistryServiceStub(channel)


async def _code(call: Any) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await call
    return err.value.code(), err.value.details()


async def test_template_rpcs(stub: registry_pb2_grpc.RegistryServiceStub) -> None:
    request = pb.CreatePromptTemplateRequest(
        name="qa", template=QA, system="Be brief.", variables=["question"], description="d", actor="alice"
    )
    first = await stub.CreatePromptTemplate(request)
    assert (first.name, first.version, list(first.variables), first.created_by, first.system) == (
        "qa",
        1,
        ["question"],
        "alice",
        "Be brief.",
    )
    assert first.created_at.seconds > 0
    second = await stub.CreatePromptTemplate(request)
    assert second.version == 2
    moved = await stub.SetPromptTemplateAlias(
        pb.SetPromptTemplateAliasRequest(name="qa", alias="production", version=1, actor="alice")
    )
    assert (moved.version, list(moved.aliases)) == (1, ["production"])
    latest = await stub.GetPromptTemplate(pb.GetPromptTemplateRequest(name="qa"))
    assert latest.version == 2 and list(latest.aliases) == []
    by_alias = await stub.GetPromptTemplate(pb.GetPromptTemplateRequest(name="qa", alias="production"))
    assert by_alias.version == 1 and by_alias.template == QA
    by_number = await stub.GetPromptTemplate(pb.GetPromptTemplateRequest(name="qa", version=2))
    assert by_number == latest
    page = await stub.ListPromptTemplates(pb.ListPromptTemplatesRequest(name="qa", page_size=1))
    assert [t.version for t in page.templates] == [2] and page.next_page_token
    rest = await stub.ListPromptTemplates(
        pb.ListPromptTemplatesRequest(name="qa", page_size=1, page_token=page.next_page_token)
    )
    assert [t.version for t in rest.templates] == [1] and not rest.next_page_token
    every = await stub.ListPromptTemplates(pb.ListPromptTemplatesRequest())
    assert [(t.name, t.version) for t in every.templates] == [("qa", 2)]


async def test_template_rpcs_refuse_bad_requests_with_their_status(
    stub: registry_pb2_grpc.RegistryServiceStub,
) -> None:
    await stub.CreatePromptTemplate(
        pb.CreatePromptTemplateRequest(name="qa", template=QA, variables=["question"])
    )
    cases = [
        (
            stub.CreatePromptTemplate(
                pb.CreatePromptTemplateRequest(name="qa", template="{{ question }} {{ x }}")
            ),
            grpc.StatusCode.INVALID_ARGUMENT,
            "undeclared variable(s) question, x: declare them in `variables`",
        ),
        (
            stub.CreatePromptTemplate(pb.CreatePromptTemplateRequest(name="a b", template="hi")),
            grpc.StatusCode.INVALID_ARGUMENT,
            "name 'a b' is not a valid template name",
        ),
        (
            stub.GetPromptTemplate(pb.GetPromptTemplateRequest(name="qa", version=5)),
            grpc.StatusCode.NOT_FOUND,
            "prompt template 'qa' has no version 5 (its latest is 1)",
        ),
        (
            stub.GetPromptTemplate(pb.GetPromptTemplateRequest(name="qa", alias="production")),
            grpc.StatusCode.NOT_FOUND,
            "prompt template 'qa' has no alias 'production'",
        ),
        (
            stub.GetPromptTemplate(pb.GetPromptTemplateRequest(name="nope")),
            grpc.StatusCode.NOT_FOUND,
            "prompt template 'nope' not found",
        ),
        (
            stub.GetPromptTemplate(pb.GetPromptTemplateRequest(name="qa", version=0)),
            grpc.StatusCode.INVALID_ARGUMENT,
            "version must be 1 or more",
        ),
        (
            stub.SetPromptTemplateAlias(
                pb.SetPromptTemplateAliasRequest(name="qa", alias="production", version=2)
            ),
            grpc.StatusCode.NOT_FOUND,
            "has no version 2",
        ),
        (
            stub.ListPromptTemplates(pb.ListPromptTemplatesRequest(page_token="x")),
            grpc.StatusCode.INVALID_ARGUMENT,
            "page_token",
        ),
    ]
    for call, code, fragment in cases:
        got_code, message = await _code(call)
        assert (got_code, fragment in message) == (code, True), message
    assert (await stub.GetPromptTemplate(pb.GetPromptTemplateRequest(name="qa"))).version == 1


# --- from the command line ---------------------------------------------------------------------

runner = CliRunner()


async def _cli(address: str, *args: str) -> tuple[int, str]:
    """Run ``llmops registry ARGS``: the exit code and the output with rich's line wrapping undone."""
    env = {"LLMOPS_REGISTRY_ADDRESS": address, "LLMOPS_API_KEY": "unused", "USER": "alice"}
    # The CLI's channel is blocking: it runs in a thread while the server runs on this loop.
    result = await asyncio.to_thread(runner.invoke, app, ["registry", *args], env=env)
    return result.exit_code, " ".join(result.output.split())


async def test_the_template_commands(served: tuple[str, SqlRegistryStore], tmp_path: Path) -> None:
    address, store = served
    text = tmp_path / "qa.j2"
    text.write_text("{{ question }} ({{ tone }})")
    code, out = await _cli(address, "template", "create", "qa", "--file", str(text), "--var", "question")
    assert code == 1 and "template refused: the template uses undeclared variable(s) tone" in out
    args = ["template", "create", "qa", "--file", str(text), "--var", "question", "--var", "tone"]
    code, out = await _cli(address, *args, "--system", "Be {{ tone }}.")
    assert code == 0, out
    assert "template qa version 1: variables question, tone" in out
    assert store.get_prompt_template("qa").created_by == "alice"
    code, out = await _cli(address, *args)
    assert code == 0 and "template qa version 2" in out
    code, out = await _cli(address, "template", "alias", "qa", "production", "1")
    assert code == 0 and "qa@production -> version 1" in out
    code, out = await _cli(address, "template", "get", "qa", "--alias", "production")
    assert code == 0 and "version 1" in out and "--- system --- Be {{ tone }}." in out
    assert "--- template --- {{ question }} ({{ tone }})" in out
    code, out = await _cli(address, "template", "get", "qa")
    assert code == 0 and "template qa version 2" in out and "--- system ---" not in out
    code, out = await _cli(address, "template", "list", "qa")
    assert code == 0 and "2 version(s) of qa" in out
    code, out = await _cli(address, "template", "list")
    assert code == 0 and "1 template(s)" in out
    code, out = await _cli(address, "template", "get", "qa", "--version", "1", "--alias", "production")
    assert code == 2 and "exclude each other" in out
    code, out = await _cli(address, "template", "create", "qa", "--file", str(tmp_path / "missing.j2"))
    assert code == 2 and "cannot read --file" in out
    code, out = await _cli(address, "template", "get", "qa", "--version", "7")
    assert code == 1 and "NOT_FOUND: prompt template 'qa' has no version 7" in out


def test_template_rows_and_selectors() -> None:
    t = pb.PromptTemplate(
        name="qa", version=3, aliases=["production"], variables=["question"], created_by="a"
    )
    assert template_row(t)[:5] == ("qa", "3", "production", "question", "a")
    assert template_selector(None, "") == {}
    assert template_selector(2, "") == {"version": 2}
    assert template_selector(None, "production") == {"alias": "production"}
