"""The daemon's one configuration file, read into frozen dataclasses.

Every problem in the file is collected before anything is reported, each with its YAML path
(`accounts[0].amazon.refresh_token`), file and line, and what to write instead: an operator fixing a
config on a server should see the whole list at once, not one error per restart. Secrets are never
written in the file, only named (`{env: NAME}` or `{file: PATH}`), and no message ever shows a value
that stands where a secret belongs.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal, Mapping
from urllib.parse import urlsplit, urlunsplit

from daemon.facts import FIELDS, SETTINGS, suggest
from daemon.rules.yamlsource import Node, Position, Problem, YamlFileError, read_yaml_with_problems

SETTING_NAMES: tuple[str, ...] = tuple(name[len("settings."):] for name in SETTINGS)
ORDERS_APIS = ("2026-01-01", "v0")
LOG_FORMATS = ("json", "console", "auto")
LOG_LEVELS = ("debug", "info", "warning", "error")
DEFAULT_LISTEN = "127.0.0.1:9464"
DEFAULT_STORE_URL = "sqlite:///var/ordersync.db"


class Secret:
    """A secret read from the environment or a file. repr/str show where it came from, never the value;
    `reveal()` is the one way out, for the adapter that sends it."""

    __slots__ = ("_value", "source")

    def __init__(self, value: str, source: str) -> None:
        self._value = value
        self.source = source  # "env:NAME" or "file:PATH"

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return f"Secret({self.source})"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value and other.source == self.source

    def __hash__(self) -> int:
        return hash(self.source)

    def __reduce__(self) -> Any:
        raise TypeError("a Secret is not pickled (it would leave the process in the clear)")


@dataclass(frozen=True)
class AmazonSection:
    endpoint: str
    token_url: str
    client_id: str
    client_secret: Secret
    refresh_token: Secret
    marketplace_ids: tuple[str, ...]
    merchant_id: str
    orders_api: Literal["2026-01-01", "v0"]
    rate_limits: Mapping[str, tuple[float, float]]  # operation -> (requests per second, burst)


@dataclass(frozen=True)
class ShopifySection:
    shop: str  # a shop domain, or a base URL (a stand-in)
    access_token: Secret
    api_version: str
    match_by: Literal["source_identifier", "tag"]
    tag_prefix: str


@dataclass(frozen=True)
class AccountConfig:
    name: str
    amazon: AmazonSection
    shopify: ShopifySection
    settings: Mapping[str, bool]  # the names of daemon.facts.SETTINGS without "settings."
    batch_size: int

    def fact_settings(self) -> dict[str, bool]:
        """The settings as a rules fact holds them (`settings.<name>`)."""
        return {f"settings.{name}": value for name, value in self.settings.items()}


@dataclass(frozen=True)
class StoreConfig:
    url: str  # without a password; see `connect_url`
    password: Secret | None = None

    def connect_url(self) -> str:
        """The URL with its password put in, for the database driver only; never log it."""
        if self.password is None:
            return self.url
        parts = urlsplit(self.url)
        user, _, host = parts.netloc.rpartition("@")
        netloc = f"{user}:{_quote(self.password.reveal())}@{host}"
        return urlunsplit(parts._replace(netloc=netloc))


@dataclass(frozen=True)
class RulesConfig:
    dir: Path
    watch_seconds: float  # 0: reload on SIGHUP only


@dataclass(frozen=True)
class DecisionLogConfig:
    path: Path
    fsync: bool


@dataclass(frozen=True)
class JobsConfig:
    poll_orders: float = 60
    order_report: float = 900
    returns: float = 3600
    storefront_cancellations: float = 300
    amazon_refunds: float = 900
    storefront_refunds: float = 900
    buyer_request_reminders: float = 1800
    dispatch: float = 10
    send_batches: float = 1800
    check_feeds: float = 300


@dataclass(frozen=True)
class HttpConfig:
    host: str
    port: int
    ready_poll_age: float  # an account whose last good poll is older than this makes /readyz fail


@dataclass(frozen=True)
class LoggingConfig:
    format: Literal["json", "console", "auto"] = "auto"
    level: str = "info"


@dataclass(frozen=True)
class ShutdownConfig:
    drain_seconds: float = 20


@dataclass(frozen=True)
class DispatchConfig:
    lease_seconds: float = 60  # how long a claimed action is this process's before another may take it
    claim: int = 50  # actions claimed per dispatch run


@dataclass(frozen=True)
class Config:
    path: Path
    accounts: tuple[AccountConfig, ...]
    store: StoreConfig
    rules: RulesConfig
    decision_log: DecisionLogConfig
    jobs: JobsConfig
    http: HttpConfig
    logging: LoggingConfig
    shutdown: ShutdownConfig = field(default_factory=ShutdownConfig)
    dispatch: DispatchConfig = field(default_factory=DispatchConfig)

    def account(self, name: str) -> AccountConfig:
        for account in self.accounts:
            if account.name == name:
                return account
        raise KeyError(name)


class ConfigError(Exception):
    """Every problem found in a config file, each with its place and what to do."""

    def __init__(self, path: Path | str, problems: list[Problem]) -> None:
        self.path = str(path)
        self.problems = problems
        lines = [f"{self.path}: {len(problems)} problem(s) in the configuration:"]
        lines += [f"  {p.position.file}:{p.position.line}:{p.position.column}: {p.message}" for p in problems]
        super().__init__("\n".join(lines))


def _quote(text: str) -> str:
    from urllib.parse import quote

    return quote(text, safe="")


# ---------------------------------------------------------------------------------------------------
# Reading: a small walker over yamlsource Nodes that records problems instead of raising.

_MISSING = object()


class _Reader:
    def __init__(self, file: str, base: Path, environ: Mapping[str, str]) -> None:
        self.file = file
        self.base = base
        self.environ = environ
        self.problems: list[Problem] = []

    def error(self, where: Position, path: str, message: str) -> None:
        self.problems.append(Problem(where, f"{path}: {message}" if path else message))

    def mapping(self, node: Node | None, path: str, keys: tuple[str, ...], where: Position) -> dict[str, Node]:
        """The known keys of a mapping; unknown keys are reported with a did-you-mean."""
        if node is None or node.value is None:
            return {}
        if not node.is_mapping:
            self.error(node.position, path, f"should be a mapping of {', '.join(keys)}, not {_kind(node)}")
            return {}
        found: dict[str, Node] = {}
        for key, key_position, child in node.items():
            if key in keys:
                found[key] = child
            else:
                self.error(key_position, _join(path, key),
                           f"unknown key{suggest(key, keys)}; {'keys here are' if path else 'top-level keys are'}: {', '.join(keys)}")
        return found

    def required(self, section: dict[str, Node], key: str, path: str, where: Position) -> Node | None:
        node = section.get(key)
        if node is None or node.value is None:
            self.error(node.position if node else where, _join(path, key), "is required and missing")
            return None
        return node

    def text(self, node: Node | None, path: str, default: Any = _MISSING, *, choices: tuple[str, ...] = ()) -> Any:
        if node is None or node.value is None:
            return None if default is _MISSING else default
        value = node.value
        if isinstance(value, (int, float)) and not isinstance(value, bool) and not choices:
            value = node.text  # an id such as a marketplace written without quotes
        if not isinstance(value, str):
            if not node.trap:
                self.error(node.position, path, f"should be text, not {_kind(node)}; quote it")
            return None if default is _MISSING else default
        if choices and value not in choices:
            self.error(node.position, path, f"{value!r} is not one of {', '.join(choices)}{suggest(value, choices)}")
            return None if default is _MISSING else default
        if not value.strip():
            self.error(node.position, path, "is empty")
            return None if default is _MISSING else default
        return value

    def boolean(self, node: Node | None, path: str, default: bool) -> bool:
        if node is None or node.value is None:
            return default
        if type(node.value) is not bool:
            if not node.trap:
                self.error(node.position, path, f"should be true or false, not {_kind(node)}")
            return default
        return node.value

    def number(self, node: Node | None, path: str, default: float, *, minimum: float = 0, integer: bool = False,
               allow_zero: bool = False) -> Any:
        if node is None or node.value is None:
            return default
        value = node.value
        if isinstance(value, bool) or not isinstance(value, (int, float)) or (integer and not isinstance(value, int)):
            if not node.trap:
                self.error(node.position, path, f"should be {'a whole number' if integer else 'a number'}, not {_kind(node)}")
            return default
        if value < minimum or (value == 0 and not allow_zero):
            lowest = "0 or more" if allow_zero else f"more than {minimum}" if minimum == 0 else f"at least {minimum}"
            self.error(node.position, path, f"is {value}; it must be {lowest}")
            return default
        return value

    def secret(self, node: Node | None, path: str, where: Position, *, required: bool = True) -> Secret | None:
        """`{env: NAME}` or `{file: PATH}`. A plain value here is refused without echoing it."""
        how = "write it as {env: VARIABLE} (an environment variable) or {file: /path/to/file} (a file holding only the secret)"
        if node is None or node.value is None:
            if required:
                self.error(node.position if node else where, path, f"is required and missing; {how}")
            return None
        if not node.is_mapping:
            self.error(node.position, path, f"a secret is never written in the config file; {how}")
            return None
        if len(node.value) != 1 or next(iter(node.value)) not in ("env", "file"):
            keys = ", ".join(node.value) or "nothing"
            self.error(node.position, path, f"a secret reference has exactly one key, env or file (found {keys}); {how}")
            return None
        (kind, ref_node), = node.value.items()
        ref = ref_node.value
        if not isinstance(ref, str) or not ref.strip():
            self.error(ref_node.position, f"{path}.{kind}", f"should name {'a variable' if kind == 'env' else 'a file'} as text")
            return None
        if kind == "env":
            value = self.environ.get(ref)
            if value is None:
                self.error(ref_node.position, path, f"environment variable {ref} is not set; set it in the service's "
                                                     f"environment (systemd EnvironmentFile=, docker --env-file)")
                return None
            if not value.strip():
                self.error(ref_node.position, path, f"environment variable {ref} is set but empty")
                return None
            return Secret(value.strip(), f"env:{ref}")
        file = Path(ref).expanduser()
        if not file.is_absolute():
            file = self.base / file
        try:
            value = file.read_text(encoding="utf-8")
        except FileNotFoundError:
            self.error(ref_node.position, path, f"secret file {file} does not exist; create it holding only the secret")
            return None
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
            self.error(ref_node.position, path, f"secret file {file} cannot be read ({reason}); check its owner and mode "
                                                 f"(the service user must be able to read it)")
            return None
        if not value.strip():
            self.error(ref_node.position, path, f"secret file {file} is empty")
            return None
        return Secret(value.strip(), f"file:{file}")

    def path_value(self, node: Node | None, path: str, default: str) -> Path:
        text = self.text(node, path, default)
        result = Path(text or default).expanduser()
        return result if result.is_absolute() else self.base / result


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _kind(node: Node) -> str:
    if node.is_mapping:
        return "a mapping"
    if node.is_sequence:
        return "a list"
    value = node.value
    if isinstance(value, bool):
        return f"{node.text!r} (true/false)"
    if isinstance(value, (int, float)):
        return f"the number {node.text}"
    if isinstance(value, str):
        return "text"
    return type(value).__name__


# ---------------------------------------------------------------------------------------------------
# Sections

TOP_KEYS = ("accounts", "store", "rules", "decision_log", "jobs", "http", "logging", "shutdown", "dispatch")
ACCOUNT_KEYS = ("name", "amazon", "shopify", "settings", "batch_size")
AMAZON_KEYS = ("endpoint", "token_url", "client_id", "client_secret", "refresh_token", "marketplace_ids",
               "merchant_id", "orders_api", "rate_limits")
SHOPIFY_KEYS = ("shop", "base_url", "access_token", "api_version", "match")
MATCH_KEYS = ("by", "tag_prefix")
STORE_KEYS = ("url", "password")
RULES_KEYS = ("dir", "watch_seconds")
LOG_KEYS = ("path", "fsync")
JOB_KEYS = tuple(JobsConfig.__dataclass_fields__)
HTTP_KEYS = ("listen", "ready_poll_age")
LOGGING_KEYS = ("format", "level")
SHUTDOWN_KEYS = ("drain_seconds",)
DISPATCH_KEYS = tuple(DispatchConfig.__dataclass_fields__)
DEFAULT_TOKEN_URL = "https://api.amazon.com/auth/o2/token"


def _url(r: _Reader, node: Node | None, path: str, where: Position, default: str | None = None) -> str | None:
    value = r.text(node, path, default) if node is not None else default
    if node is None and default is None:
        r.error(where, path, "is required and missing")
        return None
    if value is None:
        return None
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        r.error(node.position if node else where, path, f"should be an http(s) URL such as https://host, not {value!r}")
        return None
    if parts.password is not None or parts.username is not None:
        r.error(node.position if node else where, path, "credentials do not go in a URL; remove them")
        return None
    return value.rstrip("/")


def _amazon(r: _Reader, node: Node | None, path: str, where: Position) -> AmazonSection | None:
    if node is None:
        r.error(where, path, "is required and missing (the seller's Selling Partner API account)")
        return None
    s = r.mapping(node, path, AMAZON_KEYS, where)
    here = node.position
    endpoint = _url(r, s.get("endpoint"), f"{path}.endpoint", here)
    token_url = _url(r, s.get("token_url"), f"{path}.token_url", here, DEFAULT_TOKEN_URL)
    client_id_node = r.required(s, "client_id", path, here)
    client_id = r.text(client_id_node, f"{path}.client_id") if client_id_node else None
    client_secret = r.secret(s.get("client_secret"), f"{path}.client_secret", here)
    refresh_token = r.secret(s.get("refresh_token"), f"{path}.refresh_token", here)
    merchant_node = r.required(s, "merchant_id", path, here)
    merchant_id = r.text(merchant_node, f"{path}.merchant_id") if merchant_node else None
    orders_api = r.text(s.get("orders_api"), f"{path}.orders_api", "2026-01-01", choices=ORDERS_APIS)
    marketplaces: list[str] = []
    market_node = r.required(s, "marketplace_ids", path, here)
    if market_node is not None:
        items = market_node.value if market_node.is_sequence else [market_node]
        for i, item in enumerate(items):
            value = r.text(item, f"{path}.marketplace_ids[{i}]")
            if value:
                marketplaces.append(value)
        if market_node.is_sequence and not items:
            r.error(market_node.position, f"{path}.marketplace_ids", "lists no marketplace; add at least one (e.g. ATVPDKIKX0DER)")
    limits = _rate_limits(r, s.get("rate_limits"), f"{path}.rate_limits")
    if None in (endpoint, token_url, client_id, client_secret, refresh_token, merchant_id) or not marketplaces:
        return None
    return AmazonSection(endpoint, token_url, client_id, client_secret, refresh_token, tuple(marketplaces),
                         merchant_id, orders_api, limits)


def _rate_limits(r: _Reader, node: Node | None, path: str) -> Mapping[str, tuple[float, float]]:
    from adapters.amazon.http import DOCUMENTED_RATE_LIMITS

    if node is None or node.value is None:
        return MappingProxyType({})
    limits: dict[str, tuple[float, float]] = {}
    operations = tuple(DOCUMENTED_RATE_LIMITS)
    for operation, _, child in (node.items() if node.is_mapping else ()):
        where = f"{path}.{operation}"
        if operation not in DOCUMENTED_RATE_LIMITS:
            r.error(child.position, where, f"unknown SP-API operation{suggest(operation, operations)}; "
                                           f"operations are {', '.join(operations)}")
            continue
        values = r.mapping(child, where, ("rate", "burst"), child.position)
        rate = r.number(values.get("rate"), f"{where}.rate", DOCUMENTED_RATE_LIMITS[operation][0])
        burst = r.number(values.get("burst"), f"{where}.burst", DOCUMENTED_RATE_LIMITS[operation][1], minimum=1)
        limits[operation] = (float(rate), float(burst))
    if not node.is_mapping:
        r.error(node.position, path, "should be a mapping of operation: {rate: per second, burst: N}")
    return MappingProxyType(limits)


def _shopify(r: _Reader, node: Node | None, path: str, where: Position) -> ShopifySection | None:
    if node is None:
        r.error(where, path, "is required and missing (the Shopify store that holds this account's orders)")
        return None
    s = r.mapping(node, path, SHOPIFY_KEYS, where)
    here = node.position
    shop: str | None = None
    if "shop" in s and "base_url" in s:
        r.error(s["base_url"].position, f"{path}.base_url", "give shop or base_url, not both")
    elif "base_url" in s:
        shop = _url(r, s["base_url"], f"{path}.base_url", here)
    elif "shop" in s:
        shop = r.text(s["shop"], f"{path}.shop")
    else:
        r.error(here, f"{path}.shop", "is required and missing (e.g. acme.myshopify.com; or base_url for a stand-in)")
    token = r.secret(s.get("access_token"), f"{path}.access_token", here)
    version = r.text(s.get("api_version"), f"{path}.api_version", "2025-01")
    if version is not None:
        from adapters.shopify.operations import operations_for

        try:
            operations_for(version)
        except ValueError as exc:
            r.error(s["api_version"].position, f"{path}.api_version", str(exc))
            version = None
    match = r.mapping(s.get("match"), f"{path}.match", MATCH_KEYS, here)
    by = r.text(match.get("by"), f"{path}.match.by", "source_identifier", choices=("source_identifier", "tag"))
    prefix = r.text(match.get("tag_prefix"), f"{path}.match.tag_prefix", "amazon-")
    if "tag_prefix" in match and by != "tag":
        r.error(match["tag_prefix"].position, f"{path}.match.tag_prefix", "is only read with by: tag")
    if None in (shop, token, version, by, prefix):
        return None
    return ShopifySection(shop, token, version, by, prefix)


def _settings(r: _Reader, node: Node | None, path: str) -> Mapping[str, bool]:
    given = r.mapping(node, path, SETTING_NAMES, node.position if node else Position(r.file, 1, 1))
    values = {name: r.boolean(given.get(name), f"{path}.{name}", bool(FIELDS[f"settings.{name}"].default))
              for name in SETTING_NAMES}
    return MappingProxyType(values)


def _accounts(r: _Reader, node: Node | None, where: Position) -> tuple[AccountConfig, ...]:
    if node is None or node.value is None:
        return ()
    if not node.is_sequence:
        r.error(node.position, "accounts", "should be a list of accounts (each starting with '- name: ...')")
        return ()
    accounts: list[AccountConfig] = []
    seen: dict[str, Position] = {}
    for i, item in enumerate(node.value):
        path = f"accounts[{i}]"
        s = r.mapping(item, path, ACCOUNT_KEYS, item.position)
        if not item.is_mapping:
            continue
        name_node = r.required(s, "name", path, item.position)
        name = r.text(name_node, f"{path}.name") if name_node else None
        if name is not None:
            if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", name):
                r.error(name_node.position, f"{path}.name", f"{name!r} should be letters, digits, '-', '_' or '.' "
                                                            f"(it names metrics, log lines and the audit chain)")
            elif name in seen:
                r.error(name_node.position, f"{path}.name", f"account name {name!r} is used twice (first at line "
                                                            f"{seen[name].line}); each account needs its own name")
            else:
                seen[name] = name_node.position
        amazon = _amazon(r, s.get("amazon"), f"{path}.amazon", item.position)
        shopify = _shopify(r, s.get("shopify"), f"{path}.shopify", item.position)
        settings = _settings(r, s.get("settings"), f"{path}.settings")
        batch = r.number(s.get("batch_size"), f"{path}.batch_size", 15, minimum=1, integer=True)
        if name and amazon and shopify:
            accounts.append(AccountConfig(name, amazon, shopify, settings, batch))
    return tuple(accounts)


def _store(r: _Reader, node: Node | None) -> StoreConfig:
    s = r.mapping(node, "store", STORE_KEYS, node.position if node else Position(r.file, 1, 1))
    url_node = s.get("url")
    url = DEFAULT_STORE_URL
    if url_node is not None and url_node.is_mapping:
        secret = r.secret(url_node, "store.url", url_node.position)
        url = secret.reveal() if secret else DEFAULT_STORE_URL  # a URL from a secret is checked below but never shown
        shown_from: str | None = secret.source if secret else None
    else:
        url = r.text(url_node, "store.url", DEFAULT_STORE_URL)
        shown_from = None
    password = r.secret(s.get("password"), "store.password", Position(r.file, 1, 1), required=False)
    where = url_node.position if url_node else Position(r.file, 1, 1)
    parts = urlsplit(url)
    scheme = parts.scheme
    if scheme == "sqlite":
        # sqlite:///relative/path (three slashes) is relative; resolve it against the config file's folder
        # so that the daemon finds the same file whatever its working directory.
        if url.startswith("sqlite:///") and not url.startswith("sqlite:////"):
            url = f"sqlite:///{(r.base / url[len('sqlite:///'):]).resolve()}"
        elif url not in ("sqlite://", "sqlite:///:memory:") and not url.startswith("sqlite:////"):
            r.error(where, "store.url", "write a SQLite URL as sqlite:///relative/path.db or sqlite:////absolute/path.db")
    elif scheme.startswith("postgresql"):
        if scheme != "postgresql+psycopg":
            r.error(where, "store.url", f"use the psycopg 3 driver: postgresql+psycopg://user@host/db (not {scheme}://)")
        if parts.password is not None and shown_from is None:
            r.error(where, "store.url", "the password does not go in the URL; remove it and add "
                                        "password: {env: VARIABLE} under store (or give the whole url as {env: VARIABLE})")
    else:
        what = f"the URL in {shown_from}" if shown_from else f"{scheme or 'this'}"
        r.error(where, "store.url", f"{what}: the store is SQLite (sqlite:///var/ordersync.db) or PostgreSQL "
                                    f"(postgresql+psycopg://user@host/db)")
    if password is not None and scheme == "sqlite":
        r.error(s["password"].position, "store.password", "SQLite takes no password; remove it")
    return StoreConfig(url, password)


def _listen(r: _Reader, node: Node | None) -> tuple[str, int]:
    text = r.text(node, "http.listen", DEFAULT_LISTEN)
    match = re.fullmatch(r"\[?([^\]]*?)\]?:(\d+)", text or "")
    if not match or not match.group(1) or int(match.group(2)) > 65535:
        r.error(node.position if node else Position(r.file, 1, 1), "http.listen",
                f"{text!r} should be HOST:PORT, e.g. {DEFAULT_LISTEN} (port 0 picks a free port)")
        return "127.0.0.1", 9464
    return match.group(1), int(match.group(2))


def build_config(root: Node | None, path: Path, r: _Reader) -> Config:
    top_where = root.position if root else Position(r.file, 1, 1)
    if root is not None and root.value is not None and not root.is_mapping:
        r.error(root.position, "", f"the file should be a mapping of {', '.join(TOP_KEYS)}, not {_kind(root)}")
        root = None
    top = r.mapping(root, "", TOP_KEYS, top_where)
    accounts = _accounts(r, top.get("accounts"), top_where)
    store = _store(r, top.get("store"))
    rules_s = r.mapping(top.get("rules"), "rules", RULES_KEYS, top_where)
    rules = RulesConfig(r.path_value(rules_s.get("dir"), "rules.dir", "rules"),
                        float(r.number(rules_s.get("watch_seconds"), "rules.watch_seconds", 3, allow_zero=True)))
    log_s = r.mapping(top.get("decision_log"), "decision_log", LOG_KEYS, top_where)
    decision_log = DecisionLogConfig(r.path_value(log_s.get("path"), "decision_log.path", "var/decisions.jsonl"),
                                     r.boolean(log_s.get("fsync"), "decision_log.fsync", False))
    jobs_s = r.mapping(top.get("jobs"), "jobs", JOB_KEYS, top_where)
    defaults = JobsConfig()
    jobs = JobsConfig(**{key: float(r.number(jobs_s.get(key), f"jobs.{key}", getattr(defaults, key)))
                         for key in JOB_KEYS})
    http_s = r.mapping(top.get("http"), "http", HTTP_KEYS, top_where)
    host, port = _listen(r, http_s.get("listen"))
    ready_age = float(r.number(http_s.get("ready_poll_age"), "http.ready_poll_age", max(3 * jobs.poll_orders, 120)))
    logging_s = r.mapping(top.get("logging"), "logging", LOGGING_KEYS, top_where)
    logging = LoggingConfig(r.text(logging_s.get("format"), "logging.format", "auto", choices=LOG_FORMATS),
                            r.text(logging_s.get("level"), "logging.level", "info", choices=LOG_LEVELS))
    shutdown_s = r.mapping(top.get("shutdown"), "shutdown", SHUTDOWN_KEYS, top_where)
    shutdown = ShutdownConfig(float(r.number(shutdown_s.get("drain_seconds"), "shutdown.drain_seconds", 20)))
    dispatch_s = r.mapping(top.get("dispatch"), "dispatch", DISPATCH_KEYS, top_where)
    dispatch = DispatchConfig(float(r.number(dispatch_s.get("lease_seconds"), "dispatch.lease_seconds", 60)),
                              int(r.number(dispatch_s.get("claim"), "dispatch.claim", 50, integer=True)))
    return Config(path, accounts, store, rules, decision_log, jobs, HttpConfig(host, port, ready_age), logging, shutdown,
                  dispatch)


def load_config(path: Path | str, *, environ: Mapping[str, str] | None = None) -> Config:
    """The config at `path`; ConfigError listing every problem (YAML traps, unknown or mistyped keys,
    missing secrets, duplicate accounts) with its place. Relative paths in the file are relative to
    the file's folder, not to the working directory."""
    path = Path(path).expanduser().absolute()
    name = str(path)
    if not path.is_file():
        raise ConfigError(name, [Problem(Position(name, 1, 1), "no such config file; start from "
                                                               "deploy/ordersync.example.yaml")])
    try:
        root, problems = read_yaml_with_problems(path)
    except YamlFileError as exc:
        raise ConfigError(name, exc.problems) from None
    reader = _Reader(name, path.parent, os.environ if environ is None else environ)
    reader.problems.extend(problems)
    config = build_config(root, path, reader)
    if reader.problems:
        reader.problems.sort(key=lambda p: (p.position.line, p.position.column))
        raise ConfigError(name, reader.problems)
    return config


def summary(config: Config) -> list[str]:
    """A readable summary for `ordersync config check`: secrets only as env:NAME / file:PATH."""
    jobs = ", ".join(f"{k}={getattr(config.jobs, k):g}s" for k in JOB_KEYS)
    store = config.store.url + (f" (password {config.store.password.source})" if config.store.password else "")
    lines = [
        f"config: {config.path}",
        f"store: {store}",
        f"rules: {config.rules.dir} (watched every {config.rules.watch_seconds:g}s)" if config.rules.watch_seconds
        else f"rules: {config.rules.dir} (reloaded on SIGHUP only)",
        f"decision log: {config.decision_log.path} (fsync {'on' if config.decision_log.fsync else 'off'})",
        f"jobs: {jobs}",
        f"dispatch: up to {config.dispatch.claim} actions per run, each leased for {config.dispatch.lease_seconds:g}s",
        f"http: {config.http.host}:{config.http.port} (/healthz /readyz /metrics)",
        f"logging: {config.logging.format}, {config.logging.level}",
        f"accounts: {len(config.accounts)}",
    ]
    for account in config.accounts:
        a, s = account.amazon, account.shopify
        on = [name for name, value in account.settings.items() if value]
        lines += [
            f"  {account.name}:",
            f"    amazon: {a.endpoint} orders API {a.orders_api}, marketplaces {', '.join(a.marketplace_ids)}, "
            f"merchant {a.merchant_id}",
            f"      client_id {a.client_id}, client_secret {a.client_secret.source}, refresh_token {a.refresh_token.source}",
            f"    shopify: {s.shop} api {s.api_version}, match by {s.match_by}"
            + (f" (prefix {s.tag_prefix})" if s.match_by == "tag" else "") + f", access_token {s.access_token.source}",
            f"    settings on: {', '.join(on) or 'none'}; batch size {account.batch_size}",
        ]
    return lines

