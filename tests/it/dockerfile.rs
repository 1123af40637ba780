//! Static checks of the Dockerfile: no container engine runs in CI, so this test reads the
//! Dockerfile as a builder would and checks what a user of the image relies on — the build
//! command README.md documents, flags the binary accepts, a non-root runtime exposing 9877
//! with a health check, and a default config that validates.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::harness::BIN;

const IMAGE_BINARY: &str = "/usr/local/bin/apitoken_exporter";
const IMAGE_CONFIG: &str = "/etc/apitoken-exporter/config.yaml";
const PORT: &str = "9877";

fn repo_file(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(name)
}

fn read_repo_file(name: &str) -> String {
    let path = repo_file(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// One Dockerfile instruction, continuation lines joined.
#[derive(Debug, Clone)]
struct Instruction {
    keyword: String,
    args: String,
}

/// The instructions of each build stage, in order (stage 0 starts at the first FROM).
struct Dockerfile {
    stages: Vec<Vec<Instruction>>,
    header_comments: Vec<String>,
}

impl Dockerfile {
    fn load() -> Self {
        Self::parse(&read_repo_file("Dockerfile"))
    }

    fn parse(text: &str) -> Self {
        let mut header_comments = Vec::new();
        let mut in_header = true;
        let mut stages: Vec<Vec<Instruction>> = Vec::new();
        let mut pending = String::new();
        for line in text.lines() {
            let trimmed = line.trim();
            // Comment lines are dropped by the builder, even inside a continuation.
            if let Some(comment) = trimmed.strip_prefix('#') {
                if in_header {
                    header_comments.push(comment.trim().to_string());
                }
                continue;
            }
            if trimmed.is_empty() && pending.is_empty() {
                continue;
            }
            in_header = false;
            match trimmed.strip_suffix('\\') {
                Some(head) => {
                    pending.push_str(head.trim_end());
                    pending.push(' ');
                    continue;
                }
                None => pending.push_str(trimmed),
            }
            let full = std::mem::take(&mut pending);
            let (keyword, args) = full.split_once(char::is_whitespace).unwrap_or((&full, ""));
            let instruction = Instruction {
                keyword: keyword.to_ascii_uppercase(),
                args: args.trim().to_string(),
            };
            if instruction.keyword == "FROM" {
                stages.push(Vec::new());
            }
            match stages.last_mut() {
                Some(stage) => stage.push(instruction),
                None => panic!("Dockerfile: `{full}` comes before the first FROM"),
            }
        }
        assert!(!stages.is_empty(), "Dockerfile has no FROM instruction");
        Dockerfile {
            stages,
            header_comments,
        }
    }

    fn runtime_stage(&self) -> &[Instruction] {
        self.stages.last().map(Vec::as_slice).unwrap_or_default()
    }

    /// The last instruction with this keyword in the runtime stage (the one that wins).
    fn runtime_last(&self, keyword: &str) -> Option<&Instruction> {
        self.runtime_stage()
            .iter()
            .rev()
            .find(|i| i.keyword == keyword)
    }

    /// ENTRYPOINT or CMD of the runtime stage, which must use the exec (JSON) form: the shell
    /// form needs /bin/sh, and it would not pass the container's arguments on.
    fn exec_form(&self, keyword: &str) -> Vec<String> {
        let instruction = self
            .runtime_last(keyword)
            .unwrap_or_else(|| panic!("Dockerfile: the runtime stage has no {keyword}"));
        parse_json_string_array(&instruction.args).unwrap_or_else(|e| {
            panic!(
                "Dockerfile: {keyword} must use the exec form [\"...\", ...] ({e}): {}",
                instruction.args
            )
        })
    }

    /// The HEALTHCHECK command (exec form) of the runtime stage, after its options.
    fn healthcheck_command(&self) -> Vec<String> {
        let hc = self
            .runtime_last("HEALTHCHECK")
            .unwrap_or_else(|| panic!("Dockerfile: the runtime stage has no HEALTHCHECK"));
        assert_ne!(
            hc.args.trim().to_ascii_uppercase(),
            "NONE",
            "Dockerfile: HEALTHCHECK NONE disables the health check"
        );
        let cmd = hc
            .args
            .split_once("CMD ")
            .map(|(_, rest)| rest.trim())
            .unwrap_or_else(|| panic!("Dockerfile: HEALTHCHECK without CMD: {}", hc.args));
        parse_json_string_array(cmd).unwrap_or_else(|e| {
            panic!("Dockerfile: HEALTHCHECK CMD must use the exec form ({e}): {cmd}")
        })
    }

    /// (source, destination) of every COPY/ADD in the runtime stage; sources with --from
    /// are reported as `stage:path`.
    fn runtime_copies(&self) -> Vec<(String, String)> {
        copies(self.runtime_stage())
    }

    /// The same for the build stages (every stage but the last).
    fn build_copies(&self) -> Vec<(String, String)> {
        self.stages[..self.stages.len() - 1]
            .iter()
            .flat_map(|stage| copies(stage))
            .collect()
    }
}

/// (source, destination) of every COPY/ADD in these instructions; sources with --from are
/// reported as `stage:path`, several sources joined by a space.
fn copies(instructions: &[Instruction]) -> Vec<(String, String)> {
    instructions
        .iter()
        .filter(|i| i.keyword == "COPY" || i.keyword == "ADD")
        .filter_map(|i| {
            let mut from = None;
            let mut paths = Vec::new();
            for word in i.args.split_whitespace() {
                match word.strip_prefix("--") {
                    Some(opt) => {
                        if let Some(stage) = opt.strip_prefix("from=") {
                            from = Some(stage.to_string());
                        }
                    }
                    None => paths.push(word.to_string()),
                }
            }
            let dest = paths.pop()?;
            let src = paths.join(" ");
            Some(match from {
                Some(stage) => (format!("{stage}:{src}"), dest),
                None => (src, dest),
            })
        })
        .collect()
}

/// A JSON array of strings, as the Dockerfile exec form writes it.
fn parse_json_string_array(text: &str) -> Result<Vec<String>, String> {
    let inner = text
        .trim()
        .strip_prefix('[')
        .and_then(|t| t.strip_suffix(']'))
        .ok_or("not a JSON array")?;
    let mut items = Vec::new();
    let mut chars = inner.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        match chars.next() {
            None => break,
            Some('"') => {}
            Some(c) => return Err(format!("expected a string, found `{c}`")),
        }
        let mut item = String::new();
        loop {
            match chars.next() {
                None => return Err("unterminated string".into()),
                Some('"') => break,
                Some('\\') => match chars.next() {
                    Some('n') => item.push('\n'),
                    Some('t') => item.push('\t'),
                    Some(c @ ('"' | '\\' | '/')) => item.push(c),
                    other => return Err(format!("unsupported escape \\{other:?}")),
                },
                Some(c) => item.push(c),
            }
        }
        items.push(item);
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        match chars.next() {
            None => break,
            Some(',') => {}
            Some(c) => return Err(format!("expected `,` or `]`, found `{c}`")),
        }
    }
    Ok(items)
}

/// The simple commands a RUN instruction runs: its exec form (`["apk", "add", "x"]`) is
/// one command; its shell form (after BuildKit's `--mount=…`-style flags) is split into
/// words as a POSIX shell would (quotes, backslashes) and into commands at `&&`, `||`,
/// `;` and `|`. Redirections and expansions are not interpreted.
fn run_commands(args: &str) -> Vec<Vec<String>> {
    if let Ok(exec) = parse_json_string_array(args) {
        return vec![exec];
    }
    let mut rest = args.trim_start();
    while let Some(flag) = rest.strip_prefix("--") {
        rest = flag
            .split_once(char::is_whitespace)
            .map_or("", |(_, r)| r)
            .trim_start();
    }
    let mut commands = vec![Vec::new()];
    let mut word: Option<String> = None;
    let mut chars = rest.chars().peekable();
    let end_word = |word: &mut Option<String>, commands: &mut Vec<Vec<String>>| {
        if let Some(w) = word.take() {
            commands.last_mut().unwrap().push(w);
        }
    };
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                let w = word.get_or_insert_with(String::new);
                for c in chars.by_ref() {
                    if c == '\'' {
                        break;
                    }
                    w.push(c);
                }
            }
            '"' => {
                let w = word.get_or_insert_with(String::new);
                while let Some(c) = chars.next() {
                    match c {
                        '"' => break,
                        '\\' => w.extend(chars.next()),
                        c => w.push(c),
                    }
                }
            }
            '\\' => word.get_or_insert_with(String::new).extend(chars.next()),
            ';' | '&' | '|' => {
                end_word(&mut word, &mut commands);
                chars.next_if(|n| *n == c);
                if !commands.last().unwrap().is_empty() {
                    commands.push(Vec::new());
                }
            }
            c if c.is_whitespace() => end_word(&mut word, &mut commands),
            c => word.get_or_insert_with(String::new).push(c),
        }
    }
    end_word(&mut word, &mut commands);
    commands.retain(|c| !c.is_empty());
    commands
}

/// Whether a command installs `package` with a distribution's package manager.
fn installs_package(cmd: &[String], package: &str) -> bool {
    let words: Vec<&str> = cmd.iter().map(String::as_str).collect();
    let packages = match words.as_slice() {
        ["apt-get" | "apt" | "dnf" | "yum" | "microdnf", rest @ ..] => rest
            .iter()
            .position(|w| *w == "install")
            .map(|at| &rest[at + 1..]),
        ["apk", rest @ ..] => rest
            .iter()
            .position(|w| *w == "add")
            .map(|at| &rest[at + 1..]),
        _ => None,
    };
    packages.is_some_and(|p| p.iter().any(|w| !w.starts_with('-') && *w == package))
}

/// Whether a command copies, moves, links or installs a file to `path` (its last word).
fn places_file(cmd: &[String], path: &str) -> bool {
    matches!(
        cmd.first().map(String::as_str),
        Some("cp" | "mv" | "ln" | "install")
    ) && cmd.len() >= 3
        && cmd.last().map(String::as_str) == Some(path)
}

/// `--name` of every `--name` / `--name=value` argument.
fn long_flags(args: &[String]) -> Vec<String> {
    args.iter()
        .filter(|a| a.starts_with("--"))
        .map(|a| a.split('=').next().unwrap_or(a).to_string())
        .collect()
}

/// The value of `--name=value` or `--name value` in an argument list.
fn flag_value(args: &[String], name: &str) -> Option<String> {
    let mut iter = args.iter();
    while let Some(arg) = iter.next() {
        if let Some(value) = arg.strip_prefix(name).and_then(|r| r.strip_prefix('=')) {
            return Some(value.to_string());
        }
        if arg == name {
            return iter.next().cloned();
        }
    }
    None
}

fn run_binary(args: &[String], envs: &[(String, String)]) -> Output {
    Command::new(BIN)
        .args(args)
        .envs(envs.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .output()
        .unwrap_or_else(|e| panic!("cannot run {BIN}: {e}"))
}

/// The `docker build` command in the Dockerfile's header comment.
fn dockerfile_build_command(df: &Dockerfile) -> String {
    df.header_comments
        .iter()
        .find_map(|c| c.find("docker build").map(|at| c[at..].trim().to_string()))
        .unwrap_or_else(|| {
            panic!("Dockerfile: the header comment has no `docker build ...` command")
        })
}

/// Every `docker build` line inside a ```sh block of README.md.
fn readme_build_commands(readme: &str) -> Vec<String> {
    let mut commands = Vec::new();
    let mut in_sh = false;
    for line in readme.lines() {
        let trimmed = line.trim();
        if let Some(fence) = trimmed.strip_prefix("```") {
            in_sh = !in_sh && matches!(fence.trim(), "sh" | "bash" | "shell" | "console");
            continue;
        }
        let command = trimmed.trim_start_matches("$ ");
        if in_sh && command.starts_with("docker build") {
            commands.push(command.to_string());
        }
    }
    commands
}

#[test]
fn readme_documents_the_dockerfile_build_command() {
    let expected = dockerfile_build_command(&Dockerfile::load());
    let found = readme_build_commands(&read_repo_file("README.md"));
    assert!(
        !found.is_empty(),
        "README.md has no `docker build` command in a ```sh block; it should show `{expected}` \
         (the command in the Dockerfile's header comment)"
    );
    assert!(
        found.iter().all(|c| *c == expected),
        "README.md's build command {found:?} differs from the Dockerfile header's `{expected}`"
    );
}

#[test]
fn image_is_multi_stage_and_ships_a_locked_release_build() {
    let df = Dockerfile::load();
    assert!(
        df.stages.len() >= 2,
        "Dockerfile should be multi-stage (a build stage and a small runtime stage), found {} FROM",
        df.stages.len()
    );
    let build_runs: Vec<&Instruction> = df.stages[..df.stages.len() - 1]
        .iter()
        .flatten()
        .filter(|i| i.keyword == "RUN")
        .collect();
    assert!(
        build_runs
            .iter()
            .any(|i| i.args.contains("cargo build --release --locked")),
        "no build stage runs `cargo build --release --locked` (the image must build what \
         Cargo.lock pins)"
    );
    let copies = df.runtime_copies();
    assert!(
        copies
            .iter()
            .any(|(src, dest)| src.ends_with("apitoken_exporter") && src.contains(':') && dest == IMAGE_BINARY),
        "the runtime stage does not COPY --from the build stage to {IMAGE_BINARY}; copies: {copies:?}"
    );
    assert_eq!(
        df.exec_form("ENTRYPOINT"),
        vec![IMAGE_BINARY.to_string()],
        "ENTRYPOINT should be exactly [\"{IMAGE_BINARY}\"] so `docker run IMAGE --help` and \
         subcommands like `check` work"
    );
}

#[test]
fn every_flag_the_image_passes_exists_in_help() {
    let df = Dockerfile::load();
    let entrypoint = df.exec_form("ENTRYPOINT");
    let mut ours: Vec<String> = entrypoint.iter().skip(1).cloned().collect();
    ours.extend(df.exec_form("CMD"));
    // The health check's flags belong to our binary only when it runs our binary.
    let health = df.healthcheck_command();
    if health
        .first()
        .is_some_and(|exe| exe.ends_with("apitoken_exporter"))
    {
        ours.extend(health.iter().skip(1).cloned());
    }
    let flags: BTreeSet<String> = long_flags(&ours).into_iter().collect();
    assert!(
        !flags.is_empty(),
        "Dockerfile ENTRYPOINT/CMD pass no --flag to the binary (expected at least --config.file)"
    );

    let help = run_binary(&["--help".to_string()], &[]);
    assert!(help.status.success(), "`apitoken_exporter --help` failed");
    let help = String::from_utf8_lossy(&help.stdout);
    let documented: BTreeSet<&str> = help
        .split(|c: char| c.is_whitespace() || c == ',' || c == '=' || c == '<' || c == '[')
        .filter(|w| w.starts_with("--"))
        .collect();
    let unknown: Vec<&String> = flags
        .iter()
        .filter(|f| !documented.contains(f.as_str()))
        .collect();
    assert!(
        unknown.is_empty(),
        "Dockerfile passes {unknown:?}, which `apitoken_exporter --help` does not list \
         (it lists {documented:?})"
    );
}

#[test]
fn runtime_stage_runs_as_a_non_root_user() {
    let df = Dockerfile::load();
    let user = df
        .runtime_last("USER")
        .expect("Dockerfile: the runtime stage has no USER (it would run as root)");
    let name = user.args.split(':').next().unwrap_or_default().trim();
    assert!(
        !name.is_empty() && name != "root" && name.parse::<u32>() != Ok(0),
        "Dockerfile: runtime USER `{}` is root",
        user.args
    );
}

#[test]
fn runtime_stage_exposes_the_port_the_exporter_listens_on() {
    let df = Dockerfile::load();
    let exposed: Vec<String> = df
        .runtime_stage()
        .iter()
        .filter(|i| i.keyword == "EXPOSE")
        .flat_map(|i| {
            i.args
                .split_whitespace()
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
        .collect();
    assert!(
        exposed.iter().any(|p| p == PORT || p == "9877/tcp"),
        "Dockerfile: the runtime stage does not EXPOSE {PORT} (it exposes {exposed:?})"
    );
    let cmd = df.exec_form("CMD");
    let listen = flag_value(&cmd, "--web.listen-address")
        .unwrap_or_else(|| panic!("Dockerfile: CMD {cmd:?} has no --web.listen-address"));
    assert!(
        listen.ends_with(&format!(":{PORT}"))
            && !listen.starts_with("127.")
            && !listen.starts_with("localhost"),
        "Dockerfile: CMD listens on `{listen}`; it must listen on all interfaces at port {PORT} \
         (e.g. `:{PORT}`) or the published port reaches nothing"
    );
}

#[test]
fn healthcheck_probes_healthy_endpoint_with_a_tool_the_image_has() {
    let df = Dockerfile::load();
    let health = df.healthcheck_command();
    let joined = health.join(" ");
    assert!(
        joined.contains(&format!(":{PORT}/-/healthy")),
        "Dockerfile: HEALTHCHECK should request http://127.0.0.1:{PORT}/-/healthy, it runs `{joined}`"
    );
    let exe = health
        .first()
        .expect("Dockerfile: HEALTHCHECK CMD is empty");
    let basename = exe.rsplit('/').next().unwrap_or(exe);
    // The runtime image has only what its stage adds: the tool must be copied in or installed.
    let copied = df.runtime_copies().iter().any(|(_, dest)| dest == exe);
    let installed = df
        .runtime_stage()
        .iter()
        .filter(|i| i.keyword == "RUN")
        .flat_map(|i| run_commands(&i.args))
        .any(|cmd| installs_package(&cmd, basename) || places_file(&cmd, exe));
    assert!(
        copied || installed,
        "Dockerfile: HEALTHCHECK runs `{exe}`, which the runtime stage neither copies in nor installs"
    );
}

#[test]
fn cmd_reads_the_default_config_copied_into_the_image() {
    let df = Dockerfile::load();
    let cmd = df.exec_form("CMD");
    assert_eq!(
        flag_value(&cmd, "--config.file").as_deref(),
        Some(IMAGE_CONFIG),
        "Dockerfile: CMD {cmd:?} should pass --config.file={IMAGE_CONFIG}"
    );
    let copies = df.runtime_copies();
    assert!(
        copies
            .iter()
            .any(|(src, dest)| src == "config.yaml" && dest == IMAGE_CONFIG),
        "Dockerfile: the runtime stage should COPY config.yaml to {IMAGE_CONFIG}; copies: {copies:?}"
    );
}

/// Names of the environment variables config.yaml reads secrets from (`token_env`,
/// `api_key_env`, any `*_env` key); simple line matching is enough for the example file.
fn secret_env_names(config: &str) -> Vec<String> {
    config
        .lines()
        .filter_map(|line| {
            let line = line.split(" #").next().unwrap_or_default().trim();
            let line = line.trim_start_matches("- ");
            let (key, value) = line.split_once(':')?;
            let value = value.trim().trim_matches(|c| c == '"' || c == '\'');
            (key.trim().ends_with("_env") && !value.is_empty()).then(|| value.to_string())
        })
        .collect()
}

#[test]
fn default_config_passes_config_check_with_the_image_arguments() {
    let df = Dockerfile::load();
    // The file the image ships at IMAGE_CONFIG, as the build context has it.
    let source = df
        .runtime_copies()
        .into_iter()
        .find(|(src, dest)| dest == IMAGE_CONFIG && !src.contains(':'))
        .map(|(src, _)| src)
        .unwrap_or_else(|| panic!("Dockerfile: no COPY from the build context to {IMAGE_CONFIG}"));
    // The image's CMD, with the in-image config path mapped back to that file.
    let args: Vec<String> = df
        .exec_form("CMD")
        .into_iter()
        .map(|a| a.replace(IMAGE_CONFIG, &repo_file(&source).display().to_string()))
        .chain(["--config.check".to_string()])
        .collect();
    let names = secret_env_names(&read_repo_file(&source));
    assert!(
        !names.is_empty(),
        "{source} names no token_env/api_key_env; the example should show how secrets are passed"
    );
    // --config.check also requires every secret source to exist; dummy values isolate the
    // schema check (the image's users pass real ones with `docker run -e`).
    let envs: Vec<(String, String)> = names
        .iter()
        .map(|n| (n.clone(), "dummy-secret-for-config-check".to_string()))
        .collect();
    let out = run_binary(&args, &envs);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.trim_start().starts_with("OK"),
        "the image's default config ({source}) fails `apitoken_exporter {}` (with {names:?} set): \
         exit {:?}\nstdout: {stdout}\nstderr: {stderr}",
        args.join(" "),
        out.status.code()
    );
}

/// The `members = [...]` of the root Cargo.toml's `[workspace]` (one line, as written there).
fn workspace_members(manifest: &str) -> Vec<String> {
    let list = manifest
        .lines()
        .find_map(|l| l.trim().strip_prefix("members")?.trim().strip_prefix('='))
        .unwrap_or_else(|| panic!("Cargo.toml has no `members = [...]` line"));
    parse_json_string_array(list)
        .unwrap_or_else(|e| panic!("Cargo.toml: members must be a list of strings ({e}): {list}"))
}

#[test]
fn build_stage_copies_every_workspace_member() {
    // The default feature `demo` builds the simulator crate (sim/) into the binary, so the
    // build stage needs every member's sources, not only the root package's.
    let members = workspace_members(&read_repo_file("Cargo.toml"));
    assert!(
        members.iter().any(|m| m == "sim"),
        "Cargo.toml: the workspace members {members:?} do not include sim"
    );
    let copied: Vec<String> = Dockerfile::load()
        .build_copies()
        .into_iter()
        .filter(|(src, _)| !src.contains(':'))
        .flat_map(|(src, _)| {
            src.split_whitespace()
                .map(|s| s.trim_start_matches("./").trim_end_matches('/').to_string())
                .collect::<Vec<_>>()
        })
        .collect();
    for member in &members {
        // The whole context (`.`), or the member's directory (the root package: its manifest).
        let dir = match member.trim_start_matches("./").trim_end_matches('/') {
            "" | "." => "Cargo.toml",
            dir => dir,
        };
        assert!(
            copied.iter().any(|c| c == "." || c.is_empty() || c == dir),
            "Dockerfile: no build stage COPYs the workspace member `{member}` ({dir}); \
             copied: {copied:?}"
        );
    }
}

#[test]
fn dockerignore_keeps_build_output_out_of_the_context() {
    let ignore = read_repo_file(".dockerignore");
    let entries: Vec<&str> = ignore
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    for needed in ["target", ".git"] {
        assert!(
            entries
                .iter()
                .any(|e| e.trim_start_matches('/').trim_end_matches('/') == needed),
            ".dockerignore should exclude {needed}/ (it would be sent as build context); entries: {entries:?}"
        );
    }
    for kept in ["src", "sim", "Cargo.toml", "Cargo.lock", "config.yaml"] {
        assert!(
            !entries.iter().any(|e| e.trim_matches('/') == kept),
            ".dockerignore excludes {kept}, which the image build needs"
        );
    }
}

#[test]
fn parsers_understand_the_dockerfile_forms_used_above() {
    let df = Dockerfile::parse(
        "# Build: docker build -t x .\nFROM a AS b\nRUN one \\\n  # note\n  two\nFROM c\nCMD [\"--a=1\", \"--b\", \"v\\\"q\"]\n",
    );
    assert_eq!(dockerfile_build_command(&df), "docker build -t x .");
    assert_eq!(df.stages.len(), 2);
    assert_eq!(df.stages[0][1].args, "one two");
    let cmd = df.exec_form("CMD");
    assert_eq!(cmd, vec!["--a=1", "--b", "v\"q"]);
    assert_eq!(flag_value(&cmd, "--b").as_deref(), Some("v\"q"));
    assert_eq!(long_flags(&cmd), vec!["--a", "--b"]);
    assert_eq!(
        readme_build_commands("```sh\ndocker build -t x .\n```\n```yaml\ndocker build no\n```"),
        vec!["docker build -t x ."]
    );
    assert_eq!(
        secret_env_names("  - name: a\n    token_env: A_TOKEN # c\n    api_key_env: \"K\"\n"),
        vec!["A_TOKEN", "K"]
    );
    assert_eq!(
        workspace_members("[workspace]\n# c\nmembers = [\".\", \"sim\"]\n"),
        vec![".", "sim"]
    );
    // RUN instructions, as the health check's "installed" test reads them.
    let installs = |run: &str, tool: &str| {
        run_commands(run)
            .iter()
            .any(|cmd| installs_package(cmd, tool) || places_file(cmd, "/usr/bin/wget"))
    };
    let wget = |run: &str| installs(run, "wget");
    assert!(wget(
        "apt-get update && apt-get install -y --no-install-recommends wget"
    ));
    assert!(wget(
        "--mount=type=cache,target=/var/cache/apk apk add --no-cache curl wget"
    ));
    assert!(wget("[\"apk\", \"add\", \"wget\"]"));
    assert!(wget("cp /opt/busybox /usr/bin/wget"));
    assert!(wget("set -e; microdnf install -y wget | tee log"));
    assert!(!wget("echo wget"), "a word on a RUN line is not an install");
    assert!(
        !wget("echo \"apk add wget\""),
        "a quoted string is one word"
    );
    assert!(!wget("apt-get install -y wget2"));
    assert!(!wget("apt-get remove wget"));
    assert!(!wget("rm /usr/bin/wget"));
    assert_eq!(
        run_commands("a 'b c' \"d \\\"e\" f\\ g&&h||i;j|k"),
        vec![
            vec!["a", "b c", "d \"e", "f g"],
            vec!["h"],
            vec!["i"],
            vec!["j"],
            vec!["k"]
        ]
    );
}
