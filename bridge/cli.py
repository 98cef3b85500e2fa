"""Command line: argv, logging, exit codes. Calls config and app (after the dnspython
self-check), and for ``browse`` / ``explain --live`` the running gateway (web/client.py)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Sequence

from . import __version__, checks, config, logutil
from .interfaces import IPInterface, list_interfaces, local_addresses

log = logging.getLogger("bridge")

EXIT_OK = 0
EXIT_INVALID = 1  # the configuration or policies are invalid
EXIT_USAGE = 2  # argparse's own code for bad arguments


def _load(path: str | None) -> config.Config:
    return config.load(path) if path else config.embedded_default()


def _load_or_report(path: str | None) -> config.Config | None:
    """The config, or None after printing every problem (file, key, fix) to stderr."""
    try:
        return _load(path)
    except config.ConfigError as exc:
        print(f"invalid configuration:\n{exc}", file=sys.stderr)
        return None


def cmd_run(args: argparse.Namespace) -> int:
    from .app import Gateway
    from .mdns.dnspython_check import DnspythonMismatch, verify

    try:
        verify()  # the parser's shortcuts into dnspython, before anything relies on them
    except DnspythonMismatch as exc:
        print(f"mdns-gateway: cannot start: {exc}", file=sys.stderr)
        return EXIT_INVALID
    cfg = _load_or_report(args.config)
    if cfg is None:
        return EXIT_INVALID
    if args.http_listen:
        try:
            cfg = config.with_http_listen(cfg, args.http_listen)
        except config.ConfigError as exc:
            print(f"invalid configuration:\n{exc}", file=sys.stderr)
            return EXIT_INVALID
    absent = checks.absent_addresses(cfg, local_addresses())
    if absent:
        print("cannot start:\n" + "\n".join(absent), file=sys.stderr)
        return EXIT_INVALID
    for line in checks.unusable_listeners(cfg) + checks.open_http(cfg):
        log.warning("%s", line)
    if not cfg.vlans:
        log.warning("no VLANs: no usable interface found and none configured")
    try:
        asyncio.run(Gateway(cfg).run())
    except OSError as exc:
        print(f"mdns-gateway: cannot start: {exc}", file=sys.stderr)
        return EXIT_INVALID
    return EXIT_OK


def cmd_check(args: argparse.Namespace) -> int:
    from .policy import PolicyError
    from .policy.loading import load_resource_dir

    if args.policies is not None:
        return _check_manifests(args)
    cfg = _load_or_report(args.config)
    if cfg is None:
        return EXIT_INVALID
    count = 0
    if cfg.policies is not None:
        if not cfg.policies.is_dir():
            print(
                f"{cfg.source}: policies: {cfg.policies} is not a directory; fix: create it "
                "or remove the key",
                file=sys.stderr,
            )
            return EXIT_INVALID
        try:
            found = load_resource_dir(cfg.policies, cfg.vlans)  # announcements too
            count = len(found.policies) + len(found.announcements)
        except PolicyError as exc:
            print(f"invalid policies:\n{exc}", file=sys.stderr)
            return EXIT_INVALID
    unusable = checks.unusable_listeners(cfg)
    if checks.no_usable_listener(cfg):
        print("no DNS client can be answered:\n" + "\n".join(unusable), file=sys.stderr)
        return EXIT_INVALID
    # the config may be written for another machine: its addresses are a warning here
    warnings = checks.absent_addresses(cfg, local_addresses()) + unusable
    for line in warnings + checks.open_http(cfg):
        print(f"warning: {line}", file=sys.stderr)
    kube = cfg.kubernetes
    source = (
        f"{count} policy resource(s)"
        if kube is None
        else f"policies from the Kubernetes API (namespace {kube.namespace}, node "
        f"{kube.node_name}; check manifests with --policies DIR)"
    )
    print(f"{cfg.source}: OK: {len(cfg.vlans)} VLAN(s) ({', '.join(cfg.vlans) or '-'}), {source}")
    return EXIT_OK


def _check_manifests(args: argparse.Namespace) -> int:
    """``check --policies DIR``: ServicePolicy manifests, validated as the watch validates the
    objects (with the VLANs of --config; without it, VLAN names are not checked)."""
    from pathlib import Path

    from .policy.kubeobjects import AnyVlan, check_manifests

    cfg = _load_or_report(args.config) if args.config else None
    if args.config and cfg is None:
        return EXIT_INVALID
    report = check_manifests(Path(args.policies), cfg.vlans if cfg is not None else AnyVlan())
    for note in report.notes:
        print(f"note: {note}", file=sys.stderr)
    if cfg is None:
        print(
            "note: VLAN names are not checked: give --config FILE (the gateway's config) to "
            "check them against its vlans:",
            file=sys.stderr,
        )
    if report.problems:
        print("invalid policies:\n" + "\n".join(report.problems), file=sys.stderr)
        return EXIT_INVALID
    print(f"{args.policies}: OK: {len(report.policies)} ServicePolicy object(s)")
    return EXIT_OK


def _live_target(args: argparse.Namespace) -> tuple[str, str | None] | None:
    """(URL, token) of the running gateway: --url and --token-file, else the config's."""
    from .web.client import default_url

    token = None
    if args.token_file:
        try:
            with open(args.token_file, encoding="utf-8", errors="replace") as f:
                token = f.readline().strip() or None
        except OSError as exc:
            print(f"--token-file {args.token_file}: {exc.strerror or exc}", file=sys.stderr)
            return None
    url = args.url
    if url is None or token is None:
        cfg = _load_or_report(args.config)
        if cfg is None:
            return None
        url = url or default_url(cfg.http.listen)
        token = token or cfg.http.token
        if url is None:
            print(
                f"{cfg.source}: http.listen is off: nothing to ask; fix: pass --url",
                file=sys.stderr,
            )
            return None
    return url, token


def _ask(args: argparse.Namespace, path: str, query: dict[str, str]) -> dict[str, object] | None:
    from .web.client import GatewayUnreachable, fetch

    target = _live_target(args)
    if target is None:
        return None
    try:
        return fetch(target[0], path, query, target[1])
    except GatewayUnreachable as exc:
        print(f"mdns-gateway: {exc}", file=sys.stderr)
        return None


def cmd_browse(args: argparse.Namespace) -> int:
    from .web.client import browse_lines

    query = {k: v for k, v in (("vlan", args.vlan), ("view", args.view), ("type", args.type)) if v}
    body = _ask(args, "/api/services", query)
    if body is None:
        return EXIT_INVALID
    if "error" in body:
        print(f"mdns-gateway: {body['error']}", file=sys.stderr)
        return EXIT_USAGE
    for line in browse_lines(body, args.resolve):
        print(line)
    return EXIT_OK


def cmd_explain_live(args: argparse.Namespace) -> int:
    from .web.client import explain_lines

    query = {"view": args.view, "service": args.service}
    if args.vlan:
        query["vlan"] = args.vlan
    body = _ask(args, "/api/explain/live", query)
    if body is None:
        return EXIT_INVALID
    if "error" in body:
        print(f"mdns-gateway: {body['error']}", file=sys.stderr)
        return EXIT_USAGE
    for line in explain_lines(body):
        print(line)
    return EXIT_OK


def cmd_explain(args: argparse.Namespace) -> int:
    from .announce.records import origin_lines
    from .policy import PolicyEngine, PolicyError
    from .policy.loading import Resources, load_resource_dir

    if args.live:
        return cmd_explain_live(args)
    if args.vlan is None:
        args.usage.error(
            "the following arguments are required: --vlan (only --live may leave it out)"
        )

    try:
        cfg = _load(args.config)
        found = load_resource_dir(cfg.policies, cfg.vlans) if cfg.policies else Resources()
        policies = found.policies
    except (config.ConfigError, PolicyError) as exc:
        print(f"invalid configuration or policies:\n{exc}", file=sys.stderr)
        return EXIT_INVALID
    for name, key in ((args.view, "--view"), (args.vlan, "--vlan")):
        if name not in cfg.vlans and not (key == "--view" and name == config.ALL_VIEW):
            print(
                f"{key} {name}: not a configured VLAN; use one of {', '.join(cfg.vlans)}",
                file=sys.stderr,
            )
            return EXIT_USAGE
    engine = PolicyEngine(policies, cfg.vlans)
    wa = cfg.wide_area
    wide_area = None if wa is None else (wa.zone, f"{wa.server[0]}:{wa.server[1]}")
    try:
        exp = engine.explain(args.view, args.vlan, args.service, wide_area)
        print(exp)
        print(
            "\n".join(origin_lines(found.announcements, exp.vlan, exp.service_type, exp.instance))
        )
    except ValueError as exc:
        print(f"{args.service}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    return EXIT_OK


def cmd_dhcp_options(args: argparse.Namespace) -> int:
    from . import dhcpopts

    cfg = _load_or_report(args.config)
    if cfg is None:
        return EXIT_INVALID
    if cfg.chrony is None:
        print(
            f"{cfg.source}: no 'chrony:' section: printing the domain-search options only",
            file=sys.stderr,
        )
    print(
        dhcpopts.render(dhcpopts.plan(cfg, _interface_addresses()), args.format, cfg.source), end=""
    )
    return EXIT_OK


def _interface_addresses() -> dict[str, list[IPInterface]]:
    """This machine's interfaces and their addresses with prefixes."""
    return {i.name: list(i.addresses) for i in list_interfaces()}


def cmd_corefile(args: argparse.Namespace) -> int:
    from . import corefile

    cfg = _load_or_report(args.config)
    if cfg is None:
        return EXIT_INVALID
    if args.address:
        interfaces: dict[str, list[IPInterface]] = {}
        for text in args.address:
            try:
                name, addr = corefile.parse_address(text)
            except ValueError as exc:
                print(f"--address {exc}", file=sys.stderr)
                return EXIT_USAGE
            interfaces.setdefault(name, []).append(addr)
    else:
        interfaces = _interface_addresses()
    try:
        text = corefile.render(cfg, interfaces, args.style)
    except config.ConfigError as exc:
        print(f"cannot write a Corefile:\n{exc}", file=sys.stderr)
        return EXIT_INVALID
    print(text, end="")
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mdns-gateway",
        description="mDNS / DNS-SD gateway for routers: per-VLAN policy, unicast DNS "
        "discovery proxy (RFC 8766), reflector, chrony advertiser.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--config",
            "-c",
            metavar="FILE",
            help="YAML configuration (default: the embedded default: every LAN segment is "
            "a VLAN, not the WAN, containers, tunnels or bridge ports; DNS on 127.0.0.1/::1 "
            "port 5300)",
        )
        p.add_argument(
            "--log-level",
            default="info",
            choices=["debug", "info", "warning", "error"],
            help="default: info; debug adds, rate-limited, why packets are dropped, why "
            "queries are REFUSED or NXDOMAIN, and records learned, refreshed, expired, evicted",
        )
        p.add_argument(
            "--log-format",
            default="text",
            choices=logutil.LOG_FORMATS,
            help="text (default) or json: one JSON object per line, for log collectors",
        )

    p = sub.add_parser("run", help="run the gateway in the foreground")
    common(p)
    p.add_argument(
        "--http-listen",
        metavar="HOST[:PORT]",
        help="serve /metrics, /healthz, /readyz and the API here instead of http.listen (the "
        "port stays http.listen's unless given): in a DaemonSet, the node's address",
    )
    p.set_defaults(func=cmd_run)
    p = sub.add_parser("check", help="validate the configuration and policies, then exit")
    common(p)
    p.add_argument(
        "--policies",
        metavar="DIR",
        help="validate the ServicePolicy manifests under DIR (recursive; multi-document YAML, "
        "kind: List, other kinds ignored) as the Kubernetes watch would, for a GitOps "
        "repository's CI; with --config, VLAN names are checked against it",
    )
    p.set_defaults(func=cmd_check)

    def live(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--url",
            help="the running gateway's HTTP surface (default: the config's http.listen, "
            "e.g. http://127.0.0.1:9353)",
        )
        p.add_argument(
            "--token-file",
            metavar="FILE",
            help="file holding the bearer token (default: the config's http.token_file)",
        )

    p = sub.add_parser("explain", help="which policy lets a view see a service, and why")
    common(p)
    p.add_argument("--view", required=True, help="the client VLAN asking (or '*')")
    p.add_argument("--vlan", help="the VLAN the service lives on (with --live: default every VLAN)")
    p.add_argument(
        "--live",
        action="store_true",
        help="ask the running gateway: is it announced, on which VLAN, when last seen, "
        "what the policy says, would the reflector pass it",
    )
    live(p)
    p.add_argument(
        "service", help="a service type (_ipp._tcp) or instance ('My Printer._ipp._tcp')"
    )
    p.set_defaults(func=cmd_explain, usage=p)
    p = sub.add_parser(
        "browse", help="list the services the running gateway holds, as avahi-browse does"
    )
    common(p)
    p.add_argument("--vlan", help="only services announced on this VLAN")
    p.add_argument("--view", help="only services this client VLAN may see (or '*')")
    p.add_argument("--type", help="only this service type, e.g. _ipp._tcp")
    p.add_argument(
        "--resolve", "-r", action="store_true", help="host, addresses, port and TXT of each"
    )
    live(p)
    p.set_defaults(func=cmd_browse)
    p = sub.add_parser(
        "dhcp-options",
        help="print DHCP options per VLAN: NTP servers (v4 42, "
        "v6 56) and the domain search list (v4 119, v6 24)",
    )
    common(p)
    p.add_argument(
        "--format",
        choices=["dnsmasq", "kea"],
        default="dnsmasq",
        help="configuration syntax (default: dnsmasq)",
    )
    p.set_defaults(func=cmd_dhcp_options)
    p = sub.add_parser(
        "corefile",
        help="print CoreDNS server blocks forwarding each VLAN's clients to its view port",
    )
    common(p)
    p.add_argument(
        "--style",
        choices=["bind", "view"],
        default="bind",
        help="bind (default): one block per VLAN on the router's addresses there; view: "
        "one listener, blocks chosen by the client's subnet (CoreDNS's view plugin)",
    )
    p.add_argument(
        "--address",
        action="append",
        default=[],
        metavar="IFACE=ADDRESS/PREFIX",
        help="the router's address on a VLAN interface (repeat for each); given, this "
        "machine's interfaces are not read (to write the router's Corefile elsewhere, in CI)",
    )
    p.set_defaults(func=cmd_corefile)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logutil.setup(args.log_level, args.log_format)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
