"""``prmkit cache``: check or clean the embedding cache."""

from __future__ import annotations

from prmkit.cli.common import HelpFormatter, add_common, command

EXAMPLES = {
    "verify": """examples:
  prmkit cache verify
  prmkit cache verify --cache /data/prmkit-cache --json""",
    "gc": """examples:
  prmkit cache gc""",
}


def add_parser(sub) -> None:
    p = sub.add_parser("cache", help="check or clean the embedding cache",
                       description="check or clean the embedding cache",
                       formatter_class=HelpFormatter)
    cache = p.add_subparsers(dest="cache_command", required=True, metavar="CACHE_COMMAND")
    for name, text in (("verify", "check every entry (hashes, shapes, values) and list corrupt "
                        "entries, orphan files and stale folders; changes nothing, exit 1 when "
                        "anything is wrong"),
                       ("gc", "remove corrupt entries, orphan files (interrupted writes), folders "
                        "of older cache formats and of backbones no longer on this machine")):
        q = command(cache, name, text, epilog=EXAMPLES[name])
        q.add_argument("--cache", default=None, metavar="DIR",
                       help="embedding cache folder (default: $PRMKIT_CACHE/embeddings or "
                            "~/.cache/prmkit/embeddings)")
        add_common(q)


def cmd_cache(args) -> dict:
    from prmkit.embed.cache import collect_garbage, default_cache_dir, verify_cache

    root = args.cache or default_cache_dir()
    if args.cache_command == "verify":
        report = verify_cache(root)
        problems = report["corrupt"] + report["orphans"] + report["stale"]
        if not args.json:
            print(f"{report['root']}: {report['folders']} spec folders, {report['shards']} good "
                  f"shards, {report['entries']} entries, {report['steps']} steps")
            for name in ("corrupt", "orphans", "stale"):
                for line in report[name]:
                    print(f"  {name}: {line}")
            if problems:
                print(f"{len(problems)} problems; `prmkit cache gc` removes them")
        report["exit_code"] = 1 if problems else 0
        return report
    report = collect_garbage(root)
    if not args.json:
        print(f"{report['root']}: removed {report['removed_files']} files and "
              f"{report['removed_folders']} folders ({report['freed_bytes'] / 2**20:.1f} MiB); "
              f"{report['kept_entries']} entries kept")
    return report
