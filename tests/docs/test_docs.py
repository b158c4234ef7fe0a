"""Every code block in README.md and docs/ runs, as a reader would run it, so the docs cannot rot.

- python: the blocks of one page run in order in one namespace (a reader follows the page
  top to bottom), with the page's placeholders pointing at a live server and API (sandbox.py)
  and the few names a page takes as given (GIVENS).
- sh: each command runs in bash in the reader's working directory, `tokenward` on PATH, the
  server of the sandbox running on that directory's default data dir (`./var`). Commands that
  serve (`make run`, `tokenward serve`, `tokenward gateway`) start in the background and must
  answer before the next command runs.
- yaml: gateway config sections, loaded by the gateway's own loader (completed with a route
  when the block shows only a section).
- json: parsed. nginx: `nginx -t` on the block inside a server.
- text: pictures and sample output, not run.
Blocks another test runs say so (`covered-by`), and that test must exist.
"""

from __future__ import annotations

import ast
import importlib.metadata
import json
import os
import re
import secrets
import shutil
import subprocess
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from cryptography.hazmat.primitives.asymmetric import ec

from tests.conftest import IN_CI
from tests.docs.blocks import (
    LANGUAGES,
    NOT_RUN,
    ROOT,
    Block,
    all_blocks,
    documents,
    first_line,
    is_not_run,
    runnable,
)
from tests.docs.sandbox import Sandbox, sandbox
from tests.e2e.live import free_port
from tokenward.gateway.config import parse_config
from tokenward.guard import RemoteJwks, RevocationMirror, Validator
from tokenward.tokens.jwk import public_jwk

PAGES = [path.relative_to(ROOT).as_posix() for path in documents()]
CLIENTS = {"svc": "read orders:read", "billing": "orders:read"}


def _page_ids(lang: str) -> list[str]:
    return [page for page in PAGES if runnable(ROOT / page, lang)]


# --- inventory -----------------------------------------------------------------------------


def test_every_block_says_what_it_is() -> None:
    unlabelled = [block.where for block in all_blocks() if block.lang not in LANGUAGES]
    assert not unlabelled, f"fenced blocks need one of {sorted(LANGUAGES)}: {unlabelled}"


def test_blocks_run_elsewhere_name_a_test_that_exists() -> None:
    for block in all_blocks():
        target = block.covered_by
        if target is None:
            continue
        file, _, name = target.partition("::")
        source = ROOT / file
        assert source.is_file(), f"{block.where}: {file} does not exist"
        tree = ast.parse(source.read_text())
        names = {
            node.name
            for node in ast.walk(tree)
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        }
        assert name.split("::")[-1] in names, f"{block.where}: no test {target}"


def test_cedar_blocks_are_run_by_a_test() -> None:
    """No generic runner can say what a policy should allow: the test that does is named."""
    for block in all_blocks():
        if block.lang == "cedar":
            assert block.covered_by is not None, f"{block.where}: cedar blocks need covered-by"


def test_only_the_suite_itself_goes_unrun() -> None:
    for block in all_blocks():
        if is_not_run(block):
            assert first_line(block) in NOT_RUN, f"{block.where}: not-run is for {list(NOT_RUN)}"


# --- python ----------------------------------------------------------------------------------


Given = tuple[dict[str, Any], dict[str, str]]  # names a page takes as given, text to replace


def _readme(box: Sandbox, _tmp: Path) -> Given:
    return {"secret": box.secrets["svc"]}, {}


def _client_sdk(box: Sandbox, _tmp: Path) -> Given:
    return {"secret": box.secrets["billing"], "issuer": box.auth}, {}


def _signed_urls(box: Sandbox, tmp: Path) -> Given:
    media = tmp / "media"
    (media / "videos" / "abc").mkdir(parents=True)
    (media / "videos" / "abc" / "720p.mp4").write_bytes(b"\0" * 1024)
    validator = Validator(
        issuer=box.auth,
        audience=box.api,
        keys=RemoteJwks(box.auth + "/jwks"),
        revocations=RevocationMirror(),
    )
    return {"validator": validator}, {"/srv/media": str(media)}


def _token_exchange(box: Sandbox, _tmp: Path) -> Given:
    """The orders service registered as the page registers it; a token it was called with."""
    created = box.run(
        "tokenward client create --client-id orders-svc --grant-type "
        "urn:ietf:params:oauth:grant-type:token-exchange --scope orders:read "
        f"--exchange-audience {box.api}"
    )
    created.check_returncode()
    called_with = httpx.post(
        box.auth + "/token",
        data={"grant_type": "client_credentials", "scope": "read orders:read"},
        auth=("svc", box.secrets["svc"]),
    )
    called_with.raise_for_status()
    given = {
        "orders_secret": json.loads(created.stdout)["client_secret"],
        "user_token": called_with.json()["access_token"],
    }
    return given, {}


def _continuous_access(box: Sandbox, _tmp: Path) -> Given:
    """The page's receiver client as its shell block registers it; an admin client; a user."""
    made: dict[str, Any] = {}
    for name, command in {
        "secret": "tokenward client create --client-id ssf-receiver "
        "--grant-type client_credentials --scope ssf.manage",
        "ops_secret": "tokenward client create --client-id ops "
        "--grant-type client_credentials --scope tokenward:admin",
        "user_id": "printf 'a long enough password\\n' | tokenward user create --username dana",
    }.items():
        created = box.run(command)
        created.check_returncode()
        output = json.loads(created.stdout)
        made[name] = output["user_id"] if name == "user_id" else output["client_secret"]
    return made, {}


def _fapi(box: Sandbox, tmp: Path) -> Given:
    """`shop` registered as the page registers it, with the public half of `shop_key`."""
    shop_key = ec.generate_private_key(ec.SECP256R1())
    jwks = tmp / "shop-jwks.json"
    jwks.write_text(json.dumps({"keys": [public_jwk(shop_key.public_key(), "shop-1", "ES256")]}))
    created = box.run(
        "tokenward client create --client-id shop --grant-type authorization_code "
        "--scope 'openid read' --redirect-uri https://shop.example/callback "
        f"--auth-method client_secret_basic --jwks {jwks} "
        "--require-par --require-signed-request-object"
    )
    created.check_returncode()
    return {"shop_key": shop_key, "shop_secret": json.loads(created.stdout)["client_secret"]}, {}


def _fapi2(box: Sandbox, tmp: Path) -> Given:
    """`bank` registered with --profile fapi2 and the public half of `bank_key` (a key file: the
    page's shell block names a jwks_uri, fetched only when used)."""
    bank_key = ec.generate_private_key(ec.SECP256R1())
    jwks = tmp / "bank-jwks.json"
    jwks.write_text(json.dumps({"keys": [public_jwk(bank_key.public_key(), "bank-1", "ES256")]}))
    created = box.run(
        "tokenward client create --client-id bank --grant-type authorization_code "
        "--grant-type refresh_token --scope 'openid read' "
        f"--redirect-uri https://bank.example/callback --jwks {jwks} --profile fapi2"
    )
    created.check_returncode()
    return {"bank_key": bank_key}, {}


def _second_factors(box: Sandbox, _tmp: Path) -> Given:
    """`sam` and the `bank` client, as the page names them."""
    password = secrets.token_urlsafe(16)
    created = box.run(
        "tokenward client create --client-id bank --grant-type authorization_code "
        "--scope openid --redirect-uri https://bank.example/callback"
    )
    created.check_returncode()
    box.run(f"printf '%s\\n' {password} | tokenward user create --username sam").check_returncode()
    return {"password": password, "bank_secret": json.loads(created.stdout)["client_secret"]}, {}


GIVENS: dict[str, Callable[[Sandbox, Path], Given]] = {
    "README.md": _readme,
    "docs/client-sdk.md": _client_sdk,
    "docs/signed-urls.md": _signed_urls,
    "docs/token-exchange.md": _token_exchange,
    "docs/continuous-access.md": _continuous_access,
    "docs/fapi.md": _fapi,
    "docs/fapi2.md": _fapi2,
    "docs/second-factors.md": _second_factors,
}


@pytest.mark.parametrize("page", _page_ids("python"))
def test_python_blocks_run(page: str, tmp_path: Path) -> None:
    with sandbox(tmp_path, CLIENTS) as box:
        namespace: dict[str, Any] = {"__name__": "__docs__"}
        replacements: dict[str, str] = {}
        given = GIVENS.get(page)
        if given is not None:
            names, replacements = given(box, tmp_path)
            namespace.update(names)
        for block in runnable(ROOT / page, "python"):
            text = box.substitute(block.text)
            for placeholder, value in replacements.items():
                text = text.replace(placeholder, value)
            # Line numbers of a failure are the page's own.
            code = compile("\n" * block.line + text, page, "exec")
            exec(code, namespace)  # noqa: S102 - our own documentation


# --- shell -----------------------------------------------------------------------------------

SERVING = re.compile(
    r"^(?:[A-Z_]+=\S+ )*(make run\b|tokenward\b.*\b(serve|demo|gateway)\b)(?P<bg>.*?)\s*&?$"
)
EXTRA_INSTALL = re.compile(r"^pip install '?tokenward\[(?P<extras>[\w,]+)\]'?$")


def commands(block: Block) -> list[str]:
    """One command per line, backslash continuations joined; comments and NOT_RUN dropped."""
    joined = re.sub(r"\\\n\s*", " ", block.text)
    return [
        line
        for line in (raw.strip() for raw in joined.splitlines())
        if line and not line.startswith("#") and line not in NOT_RUN
    ]


def _run_serving(box: Sandbox, command: str) -> None:
    command = command.rstrip(" &")  # `&` or not, it runs in the background here
    if command.startswith("make run"):
        port = free_port()
        # The Makefile's HOST/PORT/DATA_DIR are `?=`: the reader's environment may set them.
        box.env.update({"PORT": str(port), "DATA_DIR": str(box.cwd / "demo-var")})
        output = box.start(f"cd {ROOT} && {command}", f"http://127.0.0.1:{port}/healthz")
        _run_printed_curls(box, output)
        return
    gateway = re.search(r"tokenward gateway --config (\S+)", command)
    if gateway is not None:
        port = free_port()
        config = box.cwd / gateway.group(1)
        if not config.exists():  # the reader starts from the example
            config.write_text(_example_gateway(box, port))
        box.start(command, f"http://127.0.0.1:{port}/")
        return
    serving = re.search(r"--port[ =](\d+)", command)
    if serving is not None and " serve" in command:
        box.start(command, f"http://127.0.0.1:{serving.group(1)}/healthz")
        return
    raise AssertionError(f"no way to run {command!r} in the docs sandbox yet")


def _check_extras(command: str) -> None:
    """tokenward is installed from this checkout, not from an index: `pip install
    'tokenward[x]'` holds when the extra is declared and what it names is installed here."""
    match = EXTRA_INSTALL.match(command)
    assert match is not None
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    for extra in match.group("extras").split(","):
        assert extra in declared, f"no extra {extra!r} in pyproject.toml"
        for requirement in declared[extra]:
            name = re.split(r"[<>=!~\[; ]", requirement, maxsplit=1)[0]
            importlib.metadata.distribution(name)  # raises when it is not installed


def _example_gateway(box: Sandbox, port: int) -> str:
    text = (ROOT / "examples" / "gateway.yaml").read_text()
    return (
        text.replace("http://127.0.0.1:8000", box.auth)
        .replace("port: 8080", f"port: {port}")
        .replace("port: 9108", f"port: {free_port()}")
    )


def _run_printed_curls(box: Sandbox, output: str) -> None:
    """`make run` prints commands to paste: paste them."""
    pasted = [line.strip() for line in output.splitlines() if line.strip().startswith("curl ")]
    runnable_lines = [line for line in pasted if "<" not in line]
    assert runnable_lines, f"make run printed no runnable curl:\n{output}"
    for line in runnable_lines:
        result = box.run(line + " --fail-with-body")
        assert result.returncode == 0, f"{line}\n{result.stdout}{result.stderr}"


@pytest.mark.parametrize("page", _page_ids("sh"))
def test_shell_blocks_run(page: str, tmp_path: Path) -> None:
    with sandbox(tmp_path, CLIENTS) as box:
        for block in runnable(ROOT / page, "sh"):
            for written in commands(block):
                command = box.substitute(written)
                if SERVING.match(command):
                    _run_serving(box, command)
                    continue
                if EXTRA_INSTALL.match(command):
                    _check_extras(command)
                    continue
                result = box.run(command)
                assert result.returncode == 0, (
                    f"{block.where}: `{command}` exited {result.returncode}\n"
                    f"{result.stdout[-2000:]}{result.stderr[-2000:]}"
                )


# --- yaml, json, nginx --------------------------------------------------------------------

DEFAULT_ROUTE = {"name": "docs", "prefix": "/", "upstreams": ["http://127.0.0.1:9"], "auth": "none"}
TRUST = {"issuer": "https://auth.example.com", "audience": "https://api.example.com"}
NO_TRUST = {"none", "signed_url"}
FILE_SETTING = re.compile(r"\w+_file:\s*(/[^\s,}\]]+)")
# Values for the `*_env` names the pages use; any other name gets a random secret.
ENV_GIVENS = {"GW_TOKENWARD_DB": "postgresql+asyncpg://tokenward@db.internal:5432/tokenward"}


def _gateway_config(block: Block, tmp: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A section shown alone is completed with what a config needs; `*_env` names get values,
    `*_file` paths become files of the test's own."""
    fragment = yaml.safe_load(block.text)
    assert isinstance(fragment, dict), f"{block.where}: a gateway config is a mapping"
    fragment.setdefault("routes", [DEFAULT_ROUTE])
    if any(route.get("auth", "bearer") not in NO_TRUST for route in fragment["routes"]):
        fragment.setdefault("trust", TRUST)
    for name in re.findall(r"\w+_env:\s*(\w+)", block.text):
        monkeypatch.setenv(name, ENV_GIVENS.get(name, secrets.token_urlsafe(48)))
    text = yaml.safe_dump(fragment)
    for path in FILE_SETTING.findall(block.text):
        target = tmp / path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(secrets.token_urlsafe(48))
        text = text.replace(path, str(target))
    return text


YAML_BLOCKS = [block for page in PAGES for block in runnable(ROOT / page, "yaml")]


@pytest.mark.parametrize("block", YAML_BLOCKS, ids=[block.where for block in YAML_BLOCKS])
def test_yaml_blocks_load(block: Block, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Gateway configs by default; `<!-- docs-test: prometheus -->` marks a scrape config."""
    if block.directive == "prometheus":
        _scrape_as_configured(block, tmp_path)
        return
    parse_config(_gateway_config(block, tmp_path, monkeypatch), block.where)


def _scrape_as_configured(block: Block, tmp: Path) -> None:
    """A server started with TOKENWARD_METRICS at each target answers the scrape."""
    with sandbox(tmp, {}) as box:
        config = yaml.safe_load(box.substitute(block.text))
        for job in config["scrape_configs"]:
            path = job.get("metrics_path", "/metrics")
            for static in job["static_configs"]:
                for target in static["targets"]:
                    port = free_port()
                    box.start(
                        f"tokenward serve --port {port}",
                        f"http://127.0.0.1:{port}/healthz",
                        env={"TOKENWARD_METRICS": target},
                    )
                    scraped = httpx.get(f"http://{target}{path}", timeout=10)
                    assert scraped.status_code == 200, f"{block.where}: {target}"
                    assert "tokenward_" in scraped.text


JSON_BLOCKS = [block for page in PAGES for block in runnable(ROOT / page, "json")]


@pytest.mark.parametrize("block", JSON_BLOCKS, ids=[block.where for block in JSON_BLOCKS])
def test_json_blocks_parse(block: Block) -> None:
    json.loads(block.text)


NGINX_BLOCKS = [block for page in PAGES for block in runnable(ROOT / page, "nginx")]


@pytest.mark.parametrize("block", NGINX_BLOCKS, ids=[block.where for block in NGINX_BLOCKS])
def test_nginx_blocks_pass_nginx_t(block: Block, tmp_path: Path) -> None:
    nginx = shutil.which("nginx", path=f"{os.environ.get('PATH', '')}:/usr/sbin")
    if nginx is None:
        if IN_CI:
            pytest.fail("nginx is not installed (.ci/run installs it)")
        pytest.skip("nginx is not installed")
    conf = tmp_path / "nginx.conf"
    conf.write_text(
        f"pid {tmp_path}/nginx.pid;\nerror_log {tmp_path}/error.log;\nevents {{}}\n"
        f"http {{\n access_log off;\n client_body_temp_path {tmp_path};\n"
        f" server {{\n  listen 127.0.0.1:{free_port()};\n{block.text}\n }}\n}}\n"
    )
    result = subprocess.run(
        [nginx, "-t", "-c", str(conf), "-p", str(tmp_path)],
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
    )
    assert result.returncode == 0, f"{block.where}:\n{result.stderr}"
