#!/usr/bin/env python3
"""The Docker build context of this repository, without Docker.

Used by scripts/docker-context-check.sh (CI). Standard library only.

  docker_context.py materialise CONTEXT DEST   copy the build context that
        CONTEXT/.dockerignore leaves into DEST (empty or absent); print its files
  docker_context.py plan DOCKERFILE            print the Dockerfile's stages as
        JSON: FROM, WORKDIR, ENV/ARG, COPY (sources, destination, --from) and RUN
  docker_context.py build CONTEXT DOCKERFILE ROOTFS [--target-cache DIR]
        run the Dockerfile's stages without Docker (see run_stages)
  docker_context.py selftest                   run the pattern table below

.dockerignore semantics, as the Docker CLI applies them today (`docker build`
is BuildKit through buildx; `docker compose build` likewise):

- the file is read by moby/patternmatcher's ignorefile.ReadAll: a UTF-8 BOM is
  dropped; a line whose first character is `#` is a comment (only then: an
  indented `#` is a pattern); lines are trimmed of surrounding whitespace,
  empty ones skipped; a leading `!` marks an exception; the rest is
  filepath.Clean-ed and one leading `/` removed (paths are relative to the
  context root);
- each pattern is compiled by patternmatcher (Pattern.compile): Go
  filepath.Match syntax (`*` and `?` never cross `/`, `[...]` classes, `\\`
  escapes) plus `**` (any number of path segments, including none);
- a path is excluded when the last pattern that matches the path or one of its
  parent folders is not an exception (MatchesOrParentMatches: "last match
  wins");
- the context is walked the way BuildKit's fsutil does (filter.go): an
  excluded folder is skipped unless an exception could re-include something
  under it, in which case it is entered, and a folder appears in the context
  only if it is included itself or holds something included.

This is a port (Python, our own code) of those Go functions, checked by the
table in `selftest`. Docker's own Go code cannot run here (no Go toolchain,
no Docker engine); docker-py's `exclude_paths` follows the deprecated
`Matches` (one parent level only) and appends `!Dockerfile`, the classic
builder's behaviour, so it is not what today's CLI does.
"""

from __future__ import annotations

import json
import os
import posixpath
import re
import shlex
import shutil
import stat
import subprocess
import sys
import time

# --- .dockerignore -----------------------------------------------------------


def go_clean(path: str) -> str:
    """Go's filepath.Clean on a slash path."""
    if path == "":
        return "."
    rooted = path.startswith("/")
    parts: list[str] = []
    for part in path.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if parts and parts[-1] != "..":
                parts.pop()
            elif not rooted:
                parts.append("..")
            continue
        parts.append(part)
    cleaned = "/".join(parts)
    if rooted:
        return "/" + cleaned
    return cleaned or "."


def read_ignore_file(text: str) -> list[str]:
    """moby/patternmatcher/ignorefile.ReadAll."""
    patterns = []
    # bufio.ScanLines: split at \n, drop a trailing \r.
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    for number, line in enumerate(lines):
        line = line.removesuffix("\r")
        if number == 0 and line.startswith("\ufeff"):
            line = line[1:]
        if line.startswith("#"):
            continue
        pattern = line.strip()
        if not pattern:
            continue
        invert = pattern.startswith("!")
        if invert:
            pattern = pattern[1:].strip()
        if pattern:
            pattern = go_clean(pattern)
            if len(pattern) > 1 and pattern.startswith("/"):
                pattern = pattern[1:]
        patterns.append("!" + pattern if invert else pattern)
    return patterns


EXACT, PREFIX, SUFFIX, REGEXP = "exact", "prefix", "suffix", "regexp"
REGEX_SPECIAL = set(".+()|{}$")


class Pattern:
    """One compiled pattern (patternmatcher.Pattern, '/' as the separator)."""

    def __init__(self, text: str):
        text = text.strip()
        text = go_clean(text)
        self.exclusion = text.startswith("!")
        if self.exclusion:
            if len(text) == 1:
                raise ValueError('illegal exclusion pattern: "!"')
            text = text[1:]
        check_match_syntax(text)
        self.cleaned = text
        self.regexp: re.Pattern[str] | None = None
        self.kind = self._compile()

    def _compile(self) -> str:
        regex = "^"
        kind = EXACT
        text = self.cleaned
        i = 0
        index = 0  # the Go loop counter: one per scanned token
        while i < len(text):
            ch = text[i]
            i += 1
            if ch == "*":
                if i < len(text) and text[i] == "*":
                    i += 1
                    if i < len(text) and text[i] == "/":
                        i += 1
                    if i >= len(text):
                        if kind == EXACT:
                            kind = PREFIX
                        else:
                            regex += ".*"
                            kind = REGEXP
                    else:
                        regex += "(.*/)?"
                        kind = REGEXP
                    if index == 0:
                        kind = SUFFIX
                else:
                    regex += "[^/]*"
                    kind = REGEXP
            elif ch == "?":
                regex += "[^/]"
                kind = REGEXP
            elif ch in REGEX_SPECIAL:
                regex += "\\" + ch
            elif ch == "\\":
                if i < len(text):
                    regex += "\\" + text[i]
                    i += 1
                    kind = REGEXP
                else:
                    regex += "\\\\"
            elif ch in "[]":
                regex += ch
                kind = REGEXP
            else:
                # As patternmatcher does: copied into the expression as is.
                regex += ch
            index += 1
        if kind == REGEXP:
            self.regexp = re.compile(go_class_syntax(regex + "$"))
        return kind

    def match(self, path: str) -> bool:
        if self.kind == EXACT:
            return path == self.cleaned
        if self.kind == PREFIX:
            return path.startswith(self.cleaned[:-2])
        if self.kind == SUFFIX:
            suffix = self.cleaned[2:]
            if path.endswith(suffix):
                return True
            return suffix.startswith("/") and path == suffix[1:]
        assert self.regexp is not None
        # Go's `.` does not match a newline by default, nor does Python's.
        return self.regexp.search(path) is not None

    def __repr__(self) -> str:
        return ("!" if self.exclusion else "") + self.cleaned


def go_class_syntax(regex: str) -> str:
    """Go's regexp syntax of the few constructs that differ in Python's `re`:
    inside a class, a literal `[` needs no escape in Go but makes Python warn."""
    out = []
    in_class = False
    i = 0
    while i < len(regex):
        ch = regex[i]
        if ch == "\\" and i + 1 < len(regex):
            out.append(regex[i : i + 2])
            i += 2
            continue
        if in_class:
            if ch == "]" and not (out and out[-1] in ("[", "[^")):
                in_class = False
            elif ch == "[":
                ch = "\\["
        elif ch == "[":
            in_class = True
            if regex[i + 1 : i + 2] == "^":
                out.append("[^")
                i += 2
                continue
        out.append(ch)
        i += 1
    return "".join(out)


def check_match_syntax(pattern: str) -> None:
    """Go's filepath.Match(pattern, ".") error check: ErrBadPattern on an
    unterminated class or a trailing escape."""
    i = 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "\\":
            if i + 1 >= len(pattern):
                raise ValueError(f"syntax error in pattern: {pattern!r}")
            i += 2
            continue
        if ch == "[":
            j = i + 1
            if j < len(pattern) and pattern[j] == "^":
                j += 1
            first = True
            while True:
                if j >= len(pattern):
                    raise ValueError(f"syntax error in pattern: {pattern!r}")
                if pattern[j] == "]" and not first:
                    break
                if pattern[j] == "\\":
                    j += 1
                j += 1
                first = False
            i = j
        i += 1


class PatternMatcher:
    def __init__(self, patterns: list[str]):
        self.patterns = [Pattern(p) for p in patterns if p.strip()]
        self.exclusions = any(p.exclusion for p in self.patterns)

    def matches_or_parent_matches(self, path: str) -> bool:
        """patternmatcher.MatchesOrParentMatches: True = excluded."""
        matched = False
        parent = posixpath.dirname(path) or "."
        parent_dirs = parent.split("/")
        for pattern in self.patterns:
            if pattern.exclusion != matched:
                continue
            match = pattern.match(path)
            if not match and parent != ".":
                for i in range(len(parent_dirs)):
                    if pattern.match("/".join(parent_dirs[: i + 1])):
                        match = True
                        break
            if match:
                matched = not pattern.exclusion
        return matched


def pattern_without_trailing_glob(pattern: Pattern) -> str:
    text = pattern.cleaned
    for tail in ("/**", "/*"):
        if text.endswith(tail):
            text = text[: -len(tail)]
    return text


def context_entries(root: str, patterns: list[str]) -> list[tuple[str, bool]]:
    """The paths (relative, '/'-separated) BuildKit's fsutil sends for a local
    context at `root` with these exclude patterns, in walk order, each with
    whether it is a folder."""
    matcher = PatternMatcher(patterns)
    only_prefix_exceptions = not any(
        p.exclusion and any(c in pattern_without_trailing_glob(p) for c in "*[]?^\\") for p in matcher.patterns
    )
    entries: list[tuple[str, bool]] = []

    def walk(relative: str) -> None:
        full = os.path.join(root, relative) if relative else root
        for name in sorted(os.listdir(full)):
            path = f"{relative}/{name}" if relative else name
            st = os.lstat(os.path.join(root, path))
            is_dir = stat.S_ISDIR(st.st_mode)
            excluded = matcher.matches_or_parent_matches(path)
            if excluded:
                if not is_dir:
                    continue
                if only_prefix_exceptions:
                    if not matcher.exclusions:
                        continue
                    dir_slash = path + "/"
                    if not any(
                        p.exclusion and (pattern_without_trailing_glob(p) + "/").startswith(dir_slash)
                        for p in matcher.patterns
                    ):
                        continue
                # Entered: it appears only if something under it does.
                before = len(entries)
                walk(path)
                if len(entries) > before:
                    entries.insert(before, (path, True))
                continue
            entries.append((path, is_dir))
            if is_dir:
                walk(path)

    walk("")
    return entries


def materialise(context: str, dest: str) -> list[str]:
    ignore_file = os.path.join(context, ".dockerignore")
    patterns: list[str] = []
    if os.path.exists(ignore_file):
        with open(ignore_file, encoding="utf-8") as f:
            patterns = read_ignore_file(f.read())
    if os.path.exists(dest) and os.listdir(dest):
        raise SystemExit(f"materialise: {dest} is not empty")
    os.makedirs(dest, exist_ok=True)
    files = []
    for path, is_dir in context_entries(context, patterns):
        source = os.path.join(context, path)
        target = os.path.join(dest, path)
        if is_dir:
            os.makedirs(target, exist_ok=True)
            shutil.copystat(source, target)
        elif os.path.islink(source):
            os.symlink(os.readlink(source), target)
            files.append(path)
        else:
            shutil.copy2(source, target)
            files.append(path)
    return files


# --- Dockerfile --------------------------------------------------------------


def dockerfile_instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, rest) pairs: comments dropped, `\\` continuations joined
    (comment lines inside a continuation are skipped, as BuildKit does)."""
    if re.search(r"<<-?[\"']?[A-Za-z_]", text):
        raise SystemExit("plan: heredocs in the Dockerfile are not supported by this check")
    result = []
    current = ""
    for raw in text.splitlines():
        line = raw.rstrip()
        stripped = line.strip()
        if stripped.startswith("#") or (not stripped and not current):
            continue
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        current += line
        if current.strip():
            word, _, rest = current.strip().partition(" ")
            result.append((word.upper(), rest.strip()))
        current = ""
    if current.strip():
        raise SystemExit("plan: the Dockerfile ends inside a line continuation")
    return result


def split_flags(rest: str) -> tuple[dict[str, str], list[str]]:
    if rest.startswith("["):
        words = json.loads(rest)
    else:
        words = shlex.split(rest)
    flags = {}
    while words and words[0].startswith("--"):
        name, _, value = words.pop(0)[2:].partition("=")
        flags[name] = value
    return flags, words


def plan(dockerfile: str) -> list[dict]:
    with open(dockerfile, encoding="utf-8") as f:
        instructions = dockerfile_instructions(f.read())
    stages: list[dict] = []
    for word, rest in instructions:
        if word == "FROM":
            flags, words = split_flags(rest)
            name = words[2] if len(words) >= 3 and words[1].upper() == "AS" else None
            stages.append({"from": words[0], "name": name, "steps": []})
            continue
        if word in ("ARG",) and not stages:
            continue  # global ARGs: only FROM lines use them
        if not stages:
            raise SystemExit(f"plan: {word} before the first FROM")
        steps = stages[-1]["steps"]
        if word == "WORKDIR":
            steps.append({"op": "workdir", "path": rest})
        elif word in ("COPY", "ADD"):
            flags, words = split_flags(rest)
            if word == "ADD":
                raise SystemExit("plan: use COPY, not ADD (the check copies local files only)")
            if len(words) < 2:
                raise SystemExit(f"plan: COPY needs a source and a destination: {rest}")
            steps.append({"op": "copy", "from": flags.get("from"), "sources": words[:-1], "dest": words[-1]})
        elif word == "RUN":
            flags, words = split_flags(rest) if rest.startswith("--") else ({}, None)
            if flags:
                raise SystemExit(f"plan: RUN flags are not supported by this check: {rest}")
            command = rest
            if command.startswith("["):
                command = shlex.join(json.loads(command))
            steps.append({"op": "run", "command": command})
        elif word in ("ENV",):
            for key, value in parse_env(rest):
                steps.append({"op": "env", "name": key, "value": value})
        elif word == "ARG":
            name, _, default = rest.partition("=")
            steps.append({"op": "env", "name": name, "value": default})
        elif word in ("LABEL", "EXPOSE", "USER", "HEALTHCHECK", "CMD", "ENTRYPOINT", "STOPSIGNAL", "SHELL", "VOLUME"):
            steps.append({"op": "meta", "instruction": word})
        else:
            raise SystemExit(f"plan: unsupported instruction {word}")
    return stages


def parse_env(rest: str) -> list[tuple[str, str]]:
    words = shlex.split(rest)
    if words and "=" not in words[0]:
        return [(words[0], " ".join(words[1:]))]
    return [tuple(w.split("=", 1)) for w in words]  # type: ignore[misc]


# --- Running the stages without Docker -------------------------------------


def log(message: str) -> None:
    print(f"[docker-context] {message}", file=sys.stderr, flush=True)


APT_INSTALL = re.compile(r"apt-get\s+install\s+(?P<args>.*?)(?:&&|;|$)")


def apt_packages(command: str) -> list[str] | None:
    """The packages of a RUN that only installs Debian packages
    (apt-get update / install / rm -rf /var/lib/apt/lists/*), else None."""
    parts = [p.strip() for p in command.split("&&")]
    packages: list[str] = []
    for part in parts:
        words = part.split()
        if words[:2] == ["apt-get", "update"] or part == "rm -rf /var/lib/apt/lists/*":
            continue
        if words[:2] == ["apt-get", "install"]:
            packages += [w for w in words[2:] if not w.startswith("-")]
            continue
        return None
    return packages


def copy_into(source: str, dest: str, into_dir: bool) -> None:
    """Docker COPY of one source: a folder's contents go into dest; a file
    becomes dest, or dest/NAME when dest is a folder (ends with '/', or
    several sources)."""
    if os.path.isdir(source) and not os.path.islink(source):
        shutil.copytree(source, dest, symlinks=True, dirs_exist_ok=True)
        return
    if into_dir:
        os.makedirs(dest, exist_ok=True)
        dest = os.path.join(dest, os.path.basename(source))
    else:
        os.makedirs(os.path.dirname(dest) or ".", exist_ok=True)
    if os.path.islink(source):
        os.symlink(os.readlink(source), dest)
    else:
        shutil.copy2(source, dest)


def inside(root: str, path: str) -> str:
    """`path` of the image's file system, under `root` on this machine."""
    return os.path.join(root, path.lstrip("/"))


def run_stages(context: str, dockerfile: str, rootfs: str, target_cache: str | None) -> int:
    """Runs each stage of the Dockerfile in a folder standing for its file
    system (ROOTFS/<stage number>/), from CONTEXT (the materialised build context):

    - COPY from the context copies exactly as Docker does; a source missing
      from the context fails, as `docker build` would ("not found");
      COPY --from=STAGE copies from that stage's folder; wildcards are refused;
    - RUN runs with `sh -c` in the WORKDIR, with the stage's ENV/ARG, on this
      machine's toolchain (cargo), so it must not touch absolute paths;
    - a RUN that only installs Debian packages is checked instead
      (dpkg-query: the package must be installed here);
    - only the RUNs of stages that run cargo are run; the other stages (the
      runtime stage: packages, a user) are checked for their COPY sources.

    target_cache: when given, WORKDIR/target of each stage is a link to it,
    so cargo reuses dependencies it built for an earlier run (the sources of
    the workspace crates are compiled again every run: their paths change).
    """
    stages = plan(dockerfile)
    folders: dict[str, str] = {}
    for number, stage in enumerate(stages):
        label = stage["name"] or str(number)
        root = os.path.join(rootfs, str(number))
        os.makedirs(root, exist_ok=True)
        folders[label] = folders[str(number)] = root
        workdir = "/"
        env = dict(os.environ)
        builds = any(step["op"] == "run" and "cargo " in step["command"] for step in stage["steps"])
        log(f"stage {label} (FROM {stage['from']})" + ("" if builds else ": COPY sources only"))
        for step in stage["steps"]:
            if step["op"] == "workdir":
                workdir = posixpath.join(workdir, step["path"])
                os.makedirs(inside(root, workdir), exist_ok=True)
                if target_cache:
                    link = os.path.join(inside(root, workdir), "target")
                    if not os.path.lexists(link):
                        os.makedirs(target_cache, exist_ok=True)
                        os.symlink(os.path.abspath(target_cache), link)
            elif step["op"] == "env":
                env[step["name"]] = step["value"]
            elif step["op"] == "copy":
                source_root = context if step["from"] is None else folders.get(step["from"])
                if source_root is None:
                    log(f"COPY --from={step['from']}: no such stage before this one")
                    return 1
                dest = step["dest"]
                into_dir = dest.endswith("/") or len(step["sources"]) > 1
                dest = inside(root, posixpath.join(workdir, dest))
                for source in step["sources"]:
                    if any(c in source for c in "*?["):
                        log(f"COPY {source}: wildcards are not supported by this check")
                        return 1
                    where = inside(source_root, posixpath.normpath(posixpath.join("/", source)))
                    if not os.path.lexists(where):
                        origin = "the build context" if step["from"] is None else f"stage {step['from']}"
                        log(f"COPY {source}: not found in {origin} (.dockerignore leaves it out, or it does not exist)")
                        return 1
                    copy_into(where, dest, into_dir)
                log(f"COPY {' '.join(step['sources'])} {step['dest']}" + (f" (from {step['from']})" if step["from"] else ""))
            elif step["op"] == "run":
                command = step["command"]
                if not builds:
                    log(f"RUN (not run: the stage builds nothing) {' '.join(command.split())[:70]}...")
                    continue
                packages = apt_packages(command)
                if packages is not None:
                    missing = [
                        p
                        for p in packages
                        if subprocess.run(
                            ["dpkg-query", "-W", "-f=${Status}", p], capture_output=True, text=True
                        ).stdout.strip()
                        != "install ok installed"
                    ]
                    if missing:
                        log(f"RUN apt-get install: not installed on this machine: {' '.join(missing)}")
                        return 1
                    log(f"RUN apt-get install {' '.join(packages)}: all installed here")
                    continue
                if re.search(r"(^|[\s=>])/", command):
                    log(f"RUN touches an absolute path, which this check cannot run outside a container: {command}")
                    return 1
                log(f"RUN {' '.join(command.split())}")
                started = time.monotonic()
                status = subprocess.run(["sh", "-ec", command], cwd=inside(root, workdir), env=env).returncode
                log(f"RUN exited {status} after {time.monotonic() - started:.0f}s")
                if status != 0:
                    return status
    return 0


# --- Self-test ---------------------------------------------------------------

# (patterns, path, excluded?) — Docker's documented examples and the cases of
# patternmatcher's own test table, rewritten here.
SELFTEST = [
    (["*"], "a", True),
    (["*"], "a/b", True),
    (["*", "!a"], "a/b", False),
    (["*", "!a", "a/b"], "a/b/c", True),
    (["*/temp*"], "somedir/temporary.txt", True),
    (["*/temp*"], "somedir/sub/temporary.txt", False),
    (["*/*/temp*"], "somedir/subdir/temporary.txt", True),
    (["temp?"], "temp1", True),
    (["temp?"], "temp12", False),
    (["**/*.go"], "a.go", True),
    (["**/*.go"], "x/y/a.go", True),
    (["**/*.go"], "x/y/a.goo", False),
    (["**"], "anything/at/all", True),
    (["dir/**"], "dir/a/b", True),
    (["dir/**"], "dirx/a", False),
    (["dir/**"], "dir", False),
    (["**/target"], "target", True),
    (["**/target"], "models/target/x", True),
    (["**/target"], "models/targets", False),
    (["a/**/b"], "a/b", True),
    (["a/**/b"], "a/x/y/b", True),
    (["/abs"], "abs", True),
    (["./rel/"], "rel/x", True),
    (["*.md", "!README*.md", "README-secret.md"], "README.md", False),
    (["*.md", "!README*.md", "README-secret.md"], "README-secret.md", True),
    (["*.md", "!README*.md", "README-secret.md"], "CHANGES.md", True),
    (["[a-c]x"], "bx", True),
    (["[a-c]x"], "dx", False),
    (["[^a]x"], "ax", False),
    (["[^a]x"], "bx", True),
    (["a\\*b"], "a*b", True),
    (["a\\*b"], "axb", False),
    (["a.b"], "axb", False),
    (["a+(b)"], "a+(b)", True),
    (["src", "!src/keep"], "src/keep", False),
    (["src", "!src/keep"], "src/other", True),
]


def selftest() -> int:
    failures = 0
    for patterns, path, expected in SELFTEST:
        got = PatternMatcher(read_ignore_file("\n".join(patterns))).matches_or_parent_matches(path)
        if got != expected:
            failures += 1
            print(f"FAIL {patterns} {path}: excluded={got}, expected {expected}")
    # ignorefile details: an indented '#' is a pattern, a BOM is dropped.
    assert read_ignore_file("\ufeff# c\n  #x \n\n!  /a/../b/ \n") == ["#x", "!b"], read_ignore_file(
        "\ufeff# c\n  #x \n\n!  /a/../b/ \n"
    )
    print(f"docker_context selftest: {len(SELFTEST) - failures}/{len(SELFTEST)} cases")
    return 1 if failures else 0


def main(argv: list[str]) -> int:
    if len(argv) == 3 and argv[0] == "materialise":
        for path in materialise(argv[1], argv[2]):
            print(path)
        return 0
    if len(argv) == 2 and argv[0] == "plan":
        print(json.dumps(plan(argv[1]), indent=1))
        return 0
    if len(argv) in (4, 6) and argv[0] == "build":
        cache = None
        if len(argv) == 6:
            if argv[4] != "--target-cache":
                print(__doc__, file=sys.stderr)
                return 2
            cache = argv[5]
        return run_stages(argv[1], argv[2], argv[3], cache)
    if argv == ["selftest"]:
        return selftest()
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
