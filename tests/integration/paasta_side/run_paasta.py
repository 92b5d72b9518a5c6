"""Runs PaaSTA's own code (paasta-tools, in its own venv) for tests/integration/test_paasta_interop.

Not imported by paasport: the test runs it with ``.venv-paasta/bin/python`` and reads JSON.
``generate SOA_DIR SERVICE``: PaaSTA's generate_deployments_for_service writes
SOA_DIR/SERVICE/deployments.json. ``tag GIT_URL NAME SHA``: PaaSTA's own push (dulwich
send_pack creating the ref, as mark-for-deployment does). ``latest GIT_URL GROUP``: PaaSTA's
list_remote_refs + get_latest_deployment_tag, as JSON [ref, sha, image_version].
``rollback GIT_URL GROUP SHA``: PaaSTA's create_rollback_tag (its marker on a bad sha).
``rollback-tags GIT_URL GROUP SHA``: PaaSTA's get_rollback_tags_for_sha, as JSON.
"""

import json
import sys
import warnings


def main(argv: list[str]) -> int:
    warnings.simplefilter("ignore")  # paasta_tools warns about optional Yelp-internal modules
    from paasta_tools import remote_git  # type: ignore[import-not-found]
    from paasta_tools.generate_deployments_for_service import (  # type: ignore[import-not-found]
        generate_deployments_for_service,
    )
    from paasta_tools.utils import (  # type: ignore[import-not-found]
        format_tag,
        get_latest_deployment_tag,
        get_rollback_tags_for_sha,
    )

    command, *args = argv
    if command == "generate":
        soa_dir, service = args
        generate_deployments_for_service(service=service, soa_dir=soa_dir)
    elif command == "tag":
        git_url, name, sha = args
        mutate = remote_git.make_force_push_mutate_refs_func([format_tag(name)], sha)
        remote_git.create_remote_refs(git_url, ref_mutator=mutate, force=True)
    elif command == "latest":
        git_url, group = args
        refs = remote_git.list_remote_refs(git_url)
        print(json.dumps(list(get_latest_deployment_tag(refs, group))))
    elif command == "rollback":
        git_url, group, sha = args
        return int(remote_git.create_rollback_tag(git_url, group, sha))
    elif command == "rollback-tags":
        git_url, group, sha = args
        refs = remote_git.list_remote_refs(git_url)
        print(json.dumps(get_rollback_tags_for_sha(refs, group, sha)))
    else:
        print(f"unknown command {command!r}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
