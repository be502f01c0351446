"""Read a Dockerfile far enough to refuse one that cannot build and to count its steps.

The builders parse it again for real; this catches the common mistakes (a typo in an
instruction, no FROM, an unterminated continuation) before a build is queued, with the line at
fault, and gives the number of steps the progress bar counts to. It reads continuations and
here-documents as buildah 1.28 (Debian bookworm's) does: a backslash ends a line only before
spaces and tabs, and here-documents are refused (that buildah runs their lines as instructions).

**This parse is not a security boundary.** It is ours, not the builder's: whatever it misses, what
a build may pull is decided by the registry gate with the build's own account (image_builder.grants)
and what buildah may reach by its sandbox. A clear early error is all it is for.
"""

import re

INSTRUCTIONS = {
    "ADD",
    "ARG",
    "CMD",
    "COPY",
    "ENTRYPOINT",
    "ENV",
    "EXPOSE",
    "FROM",
    "HEALTHCHECK",
    "LABEL",
    "MAINTAINER",
    "ONBUILD",
    "RUN",
    "SHELL",
    "STOPSIGNAL",
    "USER",
    "VOLUME",
    "WORKDIR",
}
_DIRECTIVE = re.compile(r"^#\s*([a-zA-Z]+)\s*=\s*(\S+)\s*$")
_HEREDOC = re.compile(r"(?<!<)<<-?(?!<)\s*[\"']?([A-Za-z_][A-Za-z0-9_]*)")


def _check_mounts(args, number, name):
    """Refuse ``RUN --mount=type=bind`` with ``from=`` or ``rw``: buildah 1.28 follows a link in the
    mounted stage out to the host's files (CVE-2024-1753). Defence in depth: buildah runs with a
    root of its own anyway (backends.sandbox.CONFINE)."""
    for word in args.split():
        if not word.startswith("--mount="):
            continue
        options = dict(o.partition("=")[::2] for o in word[len("--mount=") :].split(","))
        if options.get("type", "bind") != "bind":
            continue
        flag = options.get("rw", options.get("readwrite"))
        writable = flag is not None and flag.lower() != "false"
        if "from" in options or writable:
            raise DockerfileError(
                f"{name}: line {number}: RUN --mount=type=bind with {'from=' if 'from' in options else 'rw'} is "
                "refused here: this hub's builder (buildah 1.28) can be led out of the build to the host's files "
                "through it (CVE-2024-1753); COPY --from= the files you need instead"
            )


class DockerfileError(ValueError):
    pass


def parse(text, name="Dockerfile"):
    """Instructions as ``[(line_number, INSTRUCTION, arguments)]``; DockerfileError if it is bad."""
    escape = "\\"
    lines = text.splitlines()
    # parser directives: only at the very top, before any comment, blank line or instruction
    for line in lines:
        match = _DIRECTIVE.match(line)
        if not match:
            break
        if match.group(1).lower() == "escape":
            if match.group(2) not in ("\\", "`"):
                raise DockerfileError(f"{name}: escape directive must be \\ or `, not {match.group(2)!r}")
            escape = match.group(2)
    steps = []
    pending, start = None, 0
    for number, raw in enumerate(lines, 1):
        line = raw.strip()
        if pending is None:
            if not line or line.startswith("#"):
                continue
            pending, start = "", number
        elif line.startswith("#"):
            continue  # comments inside a continuation are dropped
        # the builder's rule: the escape character, then only spaces or tabs (a no-break space
        # after it does not continue the line)
        if raw.rstrip(" \t\r").endswith(escape):
            pending += raw.rstrip(" \t\r").strip()[:-1] + " "
            continue
        pending += line
        steps.append((start, pending))
        pending = None
    if pending is not None:
        raise DockerfileError(f"{name}: line {start}: the instruction continues past the end of the file")
    parsed = []
    for number, text_ in steps:
        word, _, args = text_.partition(" ")
        instruction = word.upper()
        if instruction not in INSTRUCTIONS:
            hint = _closest(instruction)
            raise DockerfileError(
                f"{name}: line {number}: unknown instruction {word!r}" + (f" (did you mean {hint}?)" if hint else "")
            )
        if instruction not in ("CMD", "ENTRYPOINT", "RUN", "SHELL") and not args.strip():
            raise DockerfileError(f"{name}: line {number}: {instruction} needs arguments")
        heredoc = _HEREDOC.search(args)
        if heredoc and instruction in ("RUN", "COPY", "ADD"):
            raise DockerfileError(
                f"{name}: line {number}: here-documents (<<{heredoc.group(1)}) are not supported by "
                "this hub's builder (buildah 1.28): write the file in the build context and COPY it"
            )
        if instruction == "RUN":
            _check_mounts(args, number, name)
        parsed.append((number, instruction, args.strip()))
    if not parsed:
        raise DockerfileError(f"{name}: it has no instructions")
    first = next((p for p in parsed if p[1] != "ARG"), None)
    if first is None or first[1] != "FROM":
        where = f"line {first[0]}: " if first else ""
        raise DockerfileError(f"{name}: {where}the first instruction (after ARGs) must be FROM")
    return parsed


def _closest(word):
    import difflib

    match = difflib.get_close_matches(word, sorted(INSTRUCTIONS), n=1, cutoff=0.6)
    return match[0] if match else None


_VARIABLE = re.compile(r"\$(?:\{(?P<braced>[A-Za-z_]\w*)(?:(?P<op>:?[-+])(?P<word>[^}]*))?\}|(?P<plain>[A-Za-z_]\w*))")


def image_references(instructions, name="Dockerfile"):
    """Every image the Dockerfile pulls: ``[(line_number, reference)]``.

    Covers each stage's FROM (with global ARG defaults expanded), ``COPY --from=`` and
    ``RUN --mount=...,from=`` naming an image rather than an earlier stage; ``scratch`` pulls
    nothing. A reference that still holds a variable with no default is a DockerfileError (it
    could name any image).
    """
    args, stages, found = {}, set(), []
    seen_from = False

    def expand(value, number):
        def substitute(match):
            var = match.group("braced") or match.group("plain")
            value, op, word = args.get(var), match.group("op"), match.group("word")
            if op in ("-", ":-"):
                return value if value is not None and (op == "-" or value) else word
            if op in ("+", ":+"):
                return word if value else ""
            if value is None:
                raise DockerfileError(
                    f"{name}: line {number}: ${var} has no default value, so the image it "
                    "names cannot be checked; give the ARG a default"
                )
            return value

        return _VARIABLE.sub(substitute, value)

    def add(number, reference):
        reference = expand(reference, number)
        if reference.lower() == "scratch" or reference in stages or reference.isdigit():
            return
        found.append((number, reference))

    for number, instruction, text in instructions:
        words = text.split()
        if instruction == "ARG" and not seen_from:
            for word in words:
                key, eq, value = word.partition("=")
                args[key] = value.strip("\"'") if eq else args.get(key)
        elif instruction == "FROM":
            seen_from = True
            words = [w for w in words if not w.startswith("--")]
            if words:
                add(number, words[0])
            if len(words) >= 3 and words[1].lower() == "as":
                stages.add(words[2])
        elif instruction in ("COPY", "ADD"):
            for word in words:
                if word.startswith("--from="):
                    add(number, word[len("--from=") :])
        elif instruction == "RUN":
            for word in words:
                if word.startswith("--mount="):
                    for option in word[len("--mount=") :].split(","):
                        key, _, value = option.partition("=")
                        if key == "from":
                            add(number, value)
    return found
