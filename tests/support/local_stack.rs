//! The "local processes" stack: an OpenBao dev server, a Tansu broker and a private
//! PostgreSQL, run as child processes of the test binary on free loopback ports.
//!
//! Binaries come from `ONEX_BAO_BIN`, `ONEX_TANSU_BIN` and `ONEX_PG_BINDIR`, else from
//! the `servers.env` that `scripts/install-test-servers.sh` writes.
//!
//! Children must not outlive the test binary, yet `Servers` sits in a static that is
//! never dropped. So each child is spawned with `PR_SET_PDEATHSIG = SIGKILL` from one
//! dedicated thread that never exits: the kernel sends that signal when the *thread*
//! that forked the child ends, which then happens only when the whole process ends.
//!
//! Each server writes stdout and stderr to `<run dir>/<name>.log`; the run dir is
//! `$TMPDIR/onex-test-servers/run-<pid>-<millis>` and is printed at start-up.
//!
//! OpenBao's process is kept in [`LocalVault`] so fault tests can kill it and start
//! it again on the same port (`bao.restart<n>.log`); see `faults.rs`.

use std::{
    fs::{self, File},
    io,
    os::unix::{fs::PermissionsExt, process::CommandExt},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{
        atomic::{AtomicU32, AtomicU64, Ordering},
        mpsc, Mutex, OnceLock,
    },
    thread,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use super::{
    faults::VaultProcess,
    servers::{
        free_port, free_port_pair, kafka_metadata_probe, parse_unseal_key, poll_until_ready, probe_vault_health,
        random_secret, PostgresEndpoint, Servers, Stack,
    },
};

/// Overall deadline for each server to become ready.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How often a server is restarted on fresh ports when it lost a race for its port.
const PORT_RACE_ATTEMPTS: u32 = 3;

pub(super) fn start() -> Servers {
    let binaries = Binaries::locate();
    let run_dir = create_run_dir();
    let root_token = random_secret("root-");
    let pg_password = random_secret("pg-");

    // Spawn everything before waiting for anything, so OpenBao's start-up (about a
    // second) overlaps initdb.
    let bao = spawn_bao(&binaries, &run_dir, &root_token, 0);
    let tansu = spawn_tansu(&binaries, &run_dir, 0);
    let pg_account = postgres_account();
    let pg_data = init_postgres_cluster(&binaries, &run_dir, &pg_password, pg_account);
    let postgres = spawn_postgres(&binaries, &run_dir, &pg_data, pg_account, 0);

    let bao = ensure_ready(
        bao,
        |attempt| spawn_bao(&binaries, &run_dir, &root_token, attempt),
        |port| {
            let host_port = format!("127.0.0.1:{port}");
            Box::new(move || probe_vault_health(&host_port))
        },
    );
    let tansu = ensure_ready(
        tansu,
        |attempt| spawn_tansu(&binaries, &run_dir, attempt),
        |port| Box::new(kafka_metadata_probe(&format!("127.0.0.1:{port}"))),
    );
    let postgres = ensure_ready(
        postgres,
        |attempt| spawn_postgres(&binaries, &run_dir, &pg_data, pg_account, attempt),
        |port| {
            let bindir = binaries.pg_bindir.clone();
            Box::new(move || pg_isready(&bindir, port))
        },
    );
    check_postgres_login(&binaries, postgres.port, &pg_password);

    let unseal_key = read_unseal_key(&bao.process.log_path);
    let vault = LocalVault {
        bao: binaries.bao.clone(),
        run_dir: run_dir.clone(),
        root_token: root_token.clone(),
        port: bao.port,
        process: Mutex::new(Some(bao.process)),
        restarts: AtomicU32::new(0),
    };
    let servers = Servers {
        stack: Stack::LocalProcesses,
        vault_addr: format!("http://127.0.0.1:{}", bao.port),
        root_token,
        unseal_key: Mutex::new(unseal_key),
        vault_process: VaultProcess::Local(vault),
        vault_generation: AtomicU64::new(0),
        bootstrap_servers: format!("127.0.0.1:{}", tansu.port),
        postgres: PostgresEndpoint {
            port: postgres.port,
            password: pg_password,
            addr_for_vault: format!("127.0.0.1:{}", postgres.port),
        },
        log_dir: Some(run_dir),
    };
    // From here on the children live until the test process exits (OpenBao's is
    // owned by `servers.vault_process`, which is never dropped either).
    for process in [tansu.process, postgres.process] {
        process.keep_running();
    }
    servers
}

// ---------------------------------------------------------------------------
// Locating the binaries
// ---------------------------------------------------------------------------

struct Binaries {
    bao: PathBuf,
    tansu: PathBuf,
    /// Directory with initdb, postgres, pg_isready and psql.
    pg_bindir: PathBuf,
}

impl Binaries {
    /// Each from its environment variable, else from `servers.env`, else a panic
    /// that says how to install them.
    fn locate() -> Binaries {
        let env_file = servers_env_file();
        let lookup = tool_path;
        let missing = |what: &str| -> ! {
            panic!(
                "cannot find {what} for the local test servers.\n\
                 Run `scripts/install-test-servers.sh` (it writes {}), or set \
                 ONEX_BAO_BIN, ONEX_TANSU_BIN and ONEX_PG_BINDIR. \
                 To use Docker instead, set ONEX_TEST_STACK=containers.",
                env_file.display()
            )
        };
        let binaries = Binaries {
            bao: lookup("ONEX_BAO_BIN").unwrap_or_else(|| missing("the OpenBao binary")),
            tansu: lookup("ONEX_TANSU_BIN").unwrap_or_else(|| missing("the Tansu binary")),
            pg_bindir: lookup("ONEX_PG_BINDIR").unwrap_or_else(|| missing("the PostgreSQL bin directory")),
        };
        let pg = &binaries.pg_bindir;
        for file in [
            binaries.bao.clone(),
            binaries.tansu.clone(),
            pg.join("initdb"),
            pg.join("postgres"),
            pg.join("pg_isready"),
            pg.join("psql"),
        ] {
            if !is_executable(&file) {
                missing(&format!("an executable {}", file.display()));
            }
        }
        binaries
    }
}

/// A tool that `scripts/install-test-servers.sh` installed (`ONEX_BAO_BIN`,
/// `ONEX_PYTHON`, `ONEX_ASYNCAPI_SCHEMA`, …): the environment variable, else
/// its line in `servers.env`.
pub fn tool_path(name: &str) -> Option<PathBuf> {
    std::env::var_os(name).filter(|value| !value.is_empty()).map(PathBuf::from).or_else(|| {
        let text = fs::read_to_string(servers_env_file()).ok()?;
        parse_env_file(&text).into_iter().find(|(key, _)| key == name).map(|(_, value)| PathBuf::from(value))
    })
}

/// `$ONEX_TOOLS_DIR/servers.env` if that variable is set, else `<package>/.venv/servers.env`.
fn servers_env_file() -> PathBuf {
    let tools_dir = std::env::var_os("ONEX_TOOLS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv"));
    tools_dir.join("servers.env")
}

/// Reads `export NAME=value` lines (values as written by bash's `printf %q`).
fn parse_env_file(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|line| line.trim().strip_prefix("export "))
        .filter_map(|assignment| assignment.split_once('='))
        .map(|(name, value)| (name.trim().to_owned(), unquote_shell(value.trim())))
        .collect()
}

/// Undoes the simple quoting `printf %q` produces for paths: `'...'` or backslash escapes.
fn unquote_shell(value: &str) -> String {
    if let Some(inner) = value.strip_prefix('\'').and_then(|rest| rest.strip_suffix('\'')) {
        return inner.to_owned();
    }
    let mut out = String::with_capacity(value.len());
    let mut chars = value.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => out.extend(chars.next()),
            _ => out.push(c),
        }
    }
    out
}

fn is_executable(path: &Path) -> bool {
    fs::metadata(path).is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
}

// ---------------------------------------------------------------------------
// The run directory (logs, PostgreSQL data)
// ---------------------------------------------------------------------------

fn create_run_dir() -> PathBuf {
    let base = std::env::temp_dir().join("onex-test-servers");
    fs::create_dir_all(&base).unwrap_or_else(|e| panic!("creating {}: {e}", base.display()));
    // World-traversable: PostgreSQL runs as another user when we are root.
    let _ = fs::set_permissions(&base, fs::Permissions::from_mode(0o755));
    prune_finished_runs(&base);

    let millis = SystemTime::now().duration_since(UNIX_EPOCH).map(|elapsed| elapsed.as_millis()).unwrap_or_default();
    let dir = base.join(format!("run-{}-{millis}", std::process::id()));
    fs::create_dir(&dir).unwrap_or_else(|e| panic!("creating {}: {e}", dir.display()));
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o755))
        .unwrap_or_else(|e| panic!("chmod 755 {}: {e}", dir.display()));
    dir
}

/// Deletes the PostgreSQL data (tens of MB) of earlier runs whose process is gone,
/// and whole run dirs of such runs older than a day. Logs of recent runs stay.
fn prune_finished_runs(base: &Path) {
    let Ok(entries) = fs::read_dir(base) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) =
            name.strip_prefix("run-").and_then(|rest| rest.split('-').next()).and_then(|pid| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if Path::new(&format!("/proc/{pid}")).exists() {
            continue; // still running (or the pid was reused: keep, to be safe)
        }
        let dir = entry.path();
        let old = entry
            .metadata()
            .and_then(|meta| meta.modified())
            .ok()
            .and_then(|modified| modified.elapsed().ok())
            .is_some_and(|age| age > Duration::from_secs(24 * 3600));
        if old {
            let _ = fs::remove_dir_all(&dir);
        } else {
            let _ = fs::remove_dir_all(dir.join("postgres"));
        }
    }
}

fn log_file(run_dir: &Path, name: &str, attempt: u32) -> PathBuf {
    if attempt == 0 {
        run_dir.join(format!("{name}.log"))
    } else {
        run_dir.join(format!("{name}.retry{attempt}.log"))
    }
}

/// The last `lines` lines of a log file, for panic messages.
fn log_tail(path: &Path, lines: usize) -> String {
    match fs::read_to_string(path) {
        Ok(text) => {
            let all: Vec<&str> = text.lines().collect();
            all[all.len().saturating_sub(lines)..].join("\n")
        }
        Err(e) => format!("(cannot read {}: {e})", path.display()),
    }
}

// ---------------------------------------------------------------------------
// Spawning children that die with the test process
// ---------------------------------------------------------------------------

/// A running server process. Killed on drop unless [`ServerProcess::keep_running`]
/// was called, so a failed start-up leaves nothing behind.
#[derive(Debug)]
struct ServerProcess {
    name: &'static str,
    child: Option<Child>,
    log_path: PathBuf,
}

impl ServerProcess {
    /// Starts `command` with stdout and stderr going to `log_path`.
    fn spawn(name: &'static str, command: Command, log_path: PathBuf) -> ServerProcess {
        let child = spawn_logged(command, &log_path);
        ServerProcess { name, child: Some(child), log_path }
    }

    fn still_running(&mut self) -> Result<(), String> {
        let child = self.child.as_mut().expect("server process already released");
        match child.try_wait() {
            Ok(None) => Ok(()),
            Ok(Some(status)) => Err(format!("exited with {status}")),
            Err(e) => Err(format!("cannot check on {}: {e}", self.name)),
        }
    }

    /// Leaves the process running until the test binary exits (PDEATHSIG ends it).
    fn keep_running(mut self) {
        self.child = None;
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A spawned server and the loopback port it was told to listen on.
struct Spawned {
    process: ServerProcess,
    port: u16,
}

type Probe = Box<dyn FnMut() -> Result<(), String>>;

/// Waits until `spawned` passes its probe. If the server died because its port was
/// taken in the meantime, starts it again on fresh ports via `respawn`. Otherwise
/// panics with the reason and the tail of the server's log.
fn ensure_ready(
    mut spawned: Spawned,
    mut respawn: impl FnMut(u32) -> Spawned,
    make_probe: impl Fn(u16) -> Probe,
) -> Spawned {
    let mut attempt = 0;
    loop {
        let mut probe = make_probe(spawned.port);
        let process = &mut spawned.process;
        let outcome = poll_until_ready(process.name, READY_TIMEOUT, || process.still_running(), &mut probe);
        let failure = match outcome {
            Ok(()) => return spawned,
            Err(failure) => failure,
        };
        let tail = log_tail(&spawned.process.log_path, 40);
        attempt += 1;
        let lost_port_race = tail.to_lowercase().contains("address already in use");
        if lost_port_race && attempt < PORT_RACE_ATTEMPTS {
            drop(spawned);
            spawned = respawn(attempt);
            continue;
        }
        panic!("{failure}\n--- last lines of {} ---\n{tail}\n---", spawned.process.log_path.display());
    }
}

/// Spawns `command` (tied to the test process) with stdout and stderr to `log_path`.
fn spawn_logged(mut command: Command, log_path: &Path) -> Child {
    let log = File::create(log_path).unwrap_or_else(|e| panic!("creating log file {}: {e}", log_path.display()));
    let log_for_stderr = log.try_clone().unwrap_or_else(|e| panic!("duplicating a log file handle: {e}"));
    command.stdin(Stdio::null()).stdout(log).stderr(log_for_stderr);
    let program = command.get_program().to_owned();
    spawn_tied_to_test_process(command).unwrap_or_else(|e| panic!("spawning {}: {e}", Path::new(&program).display()))
}

struct SpawnRequest {
    command: Command,
    reply: mpsc::Sender<io::Result<Child>>,
}

/// Spawns `command` from the dedicated spawner thread with `PR_SET_PDEATHSIG=SIGKILL`,
/// so the child is killed when this test process exits, however it exits.
fn spawn_tied_to_test_process(command: Command) -> io::Result<Child> {
    static SPAWNER: OnceLock<mpsc::Sender<SpawnRequest>> = OnceLock::new();
    let spawner = SPAWNER.get_or_init(|| {
        let (requests, incoming) = mpsc::channel::<SpawnRequest>();
        thread::Builder::new()
            .name("test-server-spawner".to_owned())
            .spawn(move || {
                for request in incoming {
                    let _ = request.reply.send(spawn_with_parent_death_signal(request.command));
                }
                // The sender lives in a static, so this is never reached; if it were,
                // this thread must still not exit (its exit would kill the children).
                loop {
                    thread::park();
                }
            })
            .expect("starting the test-server spawner thread");
        requests
    });
    let (reply, answer) = mpsc::channel();
    spawner.send(SpawnRequest { command, reply }).expect("the test-server spawner thread is gone");
    answer.recv().expect("the test-server spawner thread dropped a request")
}

fn spawn_with_parent_death_signal(mut command: Command) -> io::Result<Child> {
    let test_process = std::process::id();
    // SAFETY: the closure runs in the forked child before exec and only makes
    // async-signal-safe system calls (prctl, getppid); it allocates nothing.
    unsafe {
        command.pre_exec(move || {
            // std runs this after switching uid/gid (see `Command::uid`); that order
            // matters, because a credential change clears the death signal.
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) == -1 {
                return Err(io::Error::last_os_error());
            }
            // The test process may have died between fork and prctl: no signal then.
            if libc::getppid() as u32 != test_process {
                return Err(io::Error::other("the test process exited during spawn"));
            }
            Ok(())
        });
    }
    command.spawn()
}

// ---------------------------------------------------------------------------
// OpenBao
// ---------------------------------------------------------------------------

fn spawn_bao(binaries: &Binaries, run_dir: &Path, root_token: &str, attempt: u32) -> Spawned {
    // The dev server also listens on port + 1 (cluster listener).
    let port = free_port_pair();
    let log_path = log_file(run_dir, "bao", attempt);
    let process = spawn_bao_on(&binaries.bao, run_dir, root_token, port, log_path);
    Spawned { process, port }
}

/// Starts an OpenBao dev server on `127.0.0.1:<port>` (and `port + 1`).
fn spawn_bao_on(bao: &Path, run_dir: &Path, root_token: &str, port: u16, log_path: PathBuf) -> ServerProcess {
    let mut command = Command::new(bao);
    command
        .args([
            "server",
            "-dev",
            &format!("-dev-listen-address=127.0.0.1:{port}"),
            // Do not write the token to ~/.vault-token.
            "-dev-no-store-token",
        ])
        .env("BAO_DEV_ROOT_TOKEN_ID", root_token)
        .current_dir(run_dir);
    ServerProcess::spawn("OpenBao", command, log_path)
}

/// The local stack's OpenBao dev server, which fault tests may kill and start again.
#[derive(Debug)]
pub(super) struct LocalVault {
    bao: PathBuf,
    run_dir: PathBuf,
    root_token: String,
    port: u16,
    /// The running server; `None` while stopped.
    process: Mutex<Option<ServerProcess>>,
    /// How often it was restarted, to name the log files.
    restarts: AtomicU32,
}

impl LocalVault {
    pub(super) fn is_running(&self) -> bool {
        self.process
            .lock()
            .expect("OpenBao process lock poisoned")
            .as_mut()
            .is_some_and(|process| process.still_running().is_ok())
    }

    /// Kills the server with SIGKILL and reaps it. Its sockets are closed when this
    /// returns (the caller still checks that the port refuses connections).
    pub(super) fn kill(&self) -> Result<(), String> {
        let mut slot = self.process.lock().expect("OpenBao process lock poisoned");
        let mut process = slot.take().ok_or("OpenBao is not running (already stopped with vault_stop)")?;
        let child = process.child.as_mut().expect("the OpenBao process handle is kept");
        // std's `Child::kill` sends SIGKILL.
        child.kill().map_err(|e| format!("killing OpenBao (pid {}): {e}", child.id()))?;
        child.wait().map_err(|e| format!("reaping OpenBao (pid {}): {e}", child.id()))?;
        Ok(())
    }

    /// Starts a fresh dev server on the same port with the same root token, through
    /// the spawner thread (so it dies with the test process too), and waits until
    /// `sys/health` answers 200. Returns the new server's unseal key.
    pub(super) fn restart(&self) -> Result<Option<String>, String> {
        let mut slot = self.process.lock().expect("OpenBao process lock poisoned");
        if let Some(process) = slot.as_mut() {
            if process.still_running().is_ok() {
                return Err("OpenBao is already running; call vault_stop() first".to_owned());
            }
        }
        let restart = self.restarts.fetch_add(1, Ordering::Relaxed) + 1;
        let log_path = self.run_dir.join(format!("bao.restart{restart}.log"));
        let mut process = spawn_bao_on(&self.bao, &self.run_dir, &self.root_token, self.port, log_path);
        let host_port = format!("127.0.0.1:{}", self.port);
        let ready = poll_until_ready(
            "restarted OpenBao",
            READY_TIMEOUT,
            || process.still_running(),
            || probe_vault_health(&host_port),
        );
        if let Err(failure) = ready {
            // Dropping `process` kills it if it still runs.
            return Err(format!(
                "{failure}\n--- last lines of {} ---\n{}\n---",
                process.log_path.display(),
                log_tail(&process.log_path, 40)
            ));
        }
        let unseal_key = read_unseal_key(&process.log_path);
        *slot = Some(process);
        Ok(unseal_key)
    }
}

/// The unseal key the dev server prints with its banner, which can appear just
/// after the API answers; waits for it briefly.
fn read_unseal_key(log_path: &Path) -> Option<String> {
    let mut key = None;
    let _ = poll_until_ready(
        "OpenBao's unseal key",
        Duration::from_secs(3),
        || Ok(()),
        || {
            key = fs::read_to_string(log_path).ok().and_then(|log| parse_unseal_key(&log));
            key.as_ref().map(drop).ok_or_else(|| "not printed yet".to_owned())
        },
    );
    key
}

// ---------------------------------------------------------------------------
// Tansu
// ---------------------------------------------------------------------------

fn spawn_tansu(binaries: &Binaries, run_dir: &Path, attempt: u32) -> Spawned {
    let port = free_port();
    let url = format!("tcp://127.0.0.1:{port}");
    let mut command = Command::new(&binaries.tansu);
    command
        .args([
            "broker",
            "--listener-url",
            &url,
            "--advertised-listener-url",
            &url,
            "--storage-engine",
            "memory://tansu/",
        ])
        .current_dir(run_dir);
    let process = ServerProcess::spawn("Tansu", command, log_file(run_dir, "tansu", attempt));
    Spawned { process, port }
}

/// A Tansu *proxy* (`tansu proxy`): a Kafka-protocol relay in front of the test
/// broker that rewrites the broker addresses in its answers (metadata, group
/// coordinator) to `advertised`. See `kafka_link.rs` for why fault tests need it.
#[derive(Debug)]
pub(super) struct KafkaRelay {
    process: ServerProcess,
    /// Where the relay listens, on 127.0.0.1.
    pub port: u16,
}

impl KafkaRelay {
    pub(super) fn still_running(&mut self) -> Result<(), String> {
        self.process.still_running()
    }

    pub(super) fn log_path(&self) -> &Path {
        &self.process.log_path
    }
}

/// Starts `tansu proxy` on `127.0.0.1:<port>`, forwarding to `origin`
/// (`host:port` of a Kafka broker) and advertising `advertised` (`host:port`)
/// as the broker's address. Does not wait for it to be ready. The process dies
/// with the test process, or when the returned value is dropped.
pub(super) fn spawn_kafka_relay(
    port: u16,
    advertised: &str,
    origin: &str,
    log_dir: &Path,
) -> Result<KafkaRelay, String> {
    let tansu = locate_binary("ONEX_TANSU_BIN").ok_or_else(|| {
        format!(
            "no Tansu binary (ONEX_TANSU_BIN, or {}); run scripts/install-test-servers.sh",
            servers_env_file().display()
        )
    })?;
    let mut command = Command::new(&tansu);
    command
        .args([
            "proxy",
            "--listener-url",
            &format!("tcp://127.0.0.1:{port}"),
            "--advertised-listener-url",
            &format!("tcp://{advertised}"),
            "--origin-url",
            &format!("tcp://{origin}"),
        ])
        .current_dir(log_dir);
    let log_path = log_dir.join(format!("tansu-proxy-{port}.log"));
    let process = ServerProcess::spawn("Tansu proxy", command, log_path);
    Ok(KafkaRelay { process, port })
}

/// One server binary from its environment variable, else from `servers.env`.
fn locate_binary(name: &str) -> Option<PathBuf> {
    std::env::var_os(name)
        .filter(|value| !value.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            let text = fs::read_to_string(servers_env_file()).ok()?;
            parse_env_file(&text).into_iter().find(|(key, _)| key == name).map(|(_, value)| PathBuf::from(value))
        })
        .filter(|path| is_executable(path))
}

// ---------------------------------------------------------------------------
// PostgreSQL
// ---------------------------------------------------------------------------

/// `(uid, gid)` to run PostgreSQL as: the `postgres` user when we are root
/// (initdb and postgres refuse to run as root), `None` to run as ourselves.
fn postgres_account() -> Option<(u32, u32)> {
    // SAFETY: geteuid cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        return None;
    }
    // SAFETY: getpwnam gets a NUL-terminated name and returns null or a pointer to
    // a static record, which we copy out of at once. Start-up is single-threaded
    // (it runs inside a OnceLock initialiser), so nothing else overwrites it.
    let account = unsafe {
        let entry = libc::getpwnam(c"postgres".as_ptr());
        (!entry.is_null()).then(|| ((*entry).pw_uid, (*entry).pw_gid))
    };
    Some(account.expect(
        "the tests run as root, and initdb/postgres refuse root, but there is no 'postgres' \
         user to run them as; run scripts/install-test-servers.sh (Debian's postgresql \
         package creates it)",
    ))
}

/// Runs initdb into `<run dir>/postgres/data` with the superuser `postgres` and
/// `password` (scram-sha-256). Returns the data directory.
fn init_postgres_cluster(binaries: &Binaries, run_dir: &Path, password: &str, account: Option<(u32, u32)>) -> PathBuf {
    let pg_dir = run_dir.join("postgres");
    fs::create_dir(&pg_dir).unwrap_or_else(|e| panic!("creating {}: {e}", pg_dir.display()));
    let password_file = pg_dir.join("pwfile");
    fs::write(&password_file, format!("{password}\n"))
        .unwrap_or_else(|e| panic!("writing {}: {e}", password_file.display()));
    fs::set_permissions(&password_file, fs::Permissions::from_mode(0o600))
        .expect("chmod 600 on the PostgreSQL password file");
    if let Some((uid, gid)) = account {
        for path in [&pg_dir, &password_file] {
            std::os::unix::fs::chown(path, Some(uid), Some(gid))
                .unwrap_or_else(|e| panic!("chown postgres {}: {e}", path.display()));
        }
    }

    let data_dir = pg_dir.join("data");
    let mut command = Command::new(binaries.pg_bindir.join("initdb"));
    command
        .arg("--pgdata")
        .arg(&data_dir)
        .args(["--username=postgres", "--auth=scram-sha-256"])
        .arg(format!("--pwfile={}", password_file.display()))
        .args(["--encoding=UTF8", "--no-locale", "--no-sync"])
        .current_dir(&pg_dir);
    run_as(&mut command, account);
    let log_path = run_dir.join("initdb.log");
    let status = spawn_logged(command, &log_path).wait().expect("waiting for initdb");
    let _ = fs::remove_file(&password_file);
    if !status.success() {
        panic!(
            "initdb failed with {status}\n--- last lines of {} ---\n{}\n---",
            log_path.display(),
            log_tail(&log_path, 40)
        );
    }
    data_dir
}

fn spawn_postgres(
    binaries: &Binaries,
    run_dir: &Path,
    data_dir: &Path,
    account: Option<(u32, u32)>,
    attempt: u32,
) -> Spawned {
    let port = free_port();
    let mut command = Command::new(binaries.pg_bindir.join("postgres"));
    command
        .arg("-D")
        .arg(data_dir)
        .args(["-p", &port.to_string()])
        .args([
            "-c",
            "listen_addresses=127.0.0.1",
            // TCP only: no Unix socket to collide with a system cluster's.
            "-c",
            "unix_socket_directories=",
            // Throw-away data: trade durability for speed.
            "-c",
            "fsync=off",
            "-c",
            "synchronous_commit=off",
            "-c",
            "full_page_writes=off",
        ])
        .current_dir(data_dir);
    run_as(&mut command, account);
    let process = ServerProcess::spawn("PostgreSQL", command, log_file(run_dir, "postgres", attempt));
    Spawned { process, port }
}

fn run_as(command: &mut Command, account: Option<(u32, u32)>) {
    if let Some((uid, gid)) = account {
        command.uid(uid).gid(gid);
    }
}

/// Probe: `pg_isready` says the server accepts connections.
fn pg_isready(bindir: &Path, port: u16) -> Result<(), String> {
    let output = Command::new(bindir.join("pg_isready"))
        .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-t", "2"])
        .output()
        .map_err(|e| format!("running pg_isready: {e}"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!("pg_isready: {}", String::from_utf8_lossy(&output.stdout).trim()))
    }
}

/// Logs in as `postgres` with the password over TCP, as Vault will.
fn check_postgres_login(binaries: &Binaries, port: u16, password: &str) {
    let output = Command::new(binaries.pg_bindir.join("psql"))
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(["-U", "postgres", "-d", "postgres", "-tAc", "select 1"])
        .env("PGPASSWORD", password)
        .env("PGCONNECT_TIMEOUT", "5")
        .output()
        .expect("running psql");
    let answer = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && answer.trim() == "1",
        "psql could not log in to the test PostgreSQL as postgres: {}{}",
        answer,
        String::from_utf8_lossy(&output.stderr)
    );
}
