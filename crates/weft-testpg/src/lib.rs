//! A real PostgreSQL for tests, no mocks.
//!
//! [`url`] gives a fresh database on a server shared by the whole test process: a throwaway
//! cluster made with `initdb` (as the unprivileged `nobody` when running as root) in a
//! temporary directory, listening on 127.0.0.1 on a free port. A watchdog process stops it and
//! removes its directory once the test process is gone, however it ends. `WEFT_TEST_PG_URL`
//! (an admin URL, e.g. `postgres://weft:weft@127.0.0.1:5432/postgres`) makes tests use that
//! server instead. [`Cluster::start`] gives a test a server of its own, to stop and start.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The superuser tests connect as, and its password.
pub const USER: &str = "weft";
/// Its password.
pub const PASSWORD: &str = "weft";

/// A running cluster.
pub struct Cluster {
    bin: PathBuf,
    data: PathBuf,
    /// Its port on 127.0.0.1.
    pub port: u16,
    /// Runs commands as the cluster's owner.
    as_owner: Vec<String>,
}

static SHARED: OnceLock<Result<Shared, String>> = OnceLock::new();
static NEXT: AtomicU32 = AtomicU32::new(0);

enum Shared {
    Ours(Cluster),
    External(String),
}

/// The URL of a fresh, empty database (created now) on the shared server.
pub fn url() -> String {
    let shared = SHARED.get_or_init(|| match std::env::var("WEFT_TEST_PG_URL") {
        Ok(u) if !u.is_empty() => Ok(Shared::External(u)),
        _ => Cluster::start().map(Shared::Ours),
    });
    let name = format!(
        "weft_test_{}_{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::SeqCst)
    );
    match shared {
        Ok(Shared::Ours(c)) => c.create_database(&name),
        Ok(Shared::External(admin)) => {
            psql(admin, &format!("CREATE DATABASE {name}"));
            let base = admin.rsplit_once('/').map(|(b, _)| b).unwrap_or(admin);
            format!("{base}/{name}")
        }
        Err(e) => panic!("cannot start a PostgreSQL for the tests: {e}"),
    }
}

/// Runs SQL with `psql` against `url`; panics with psql's message if it fails.
pub fn psql(url: &str, sql: &str) -> String {
    let out = Command::new("psql")
        .args([url, "-v", "ON_ERROR_STOP=1", "-tAc", sql])
        .output()
        .unwrap_or_else(|e| panic!("cannot run psql: {e}"));
    assert!(
        out.status.success(),
        "psql `{sql}` failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn bin_dir() -> Result<PathBuf, String> {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .map_err(|_| {
            "PostgreSQL is not installed (Debian's `postgresql` package); scripts/test.sh installs it"
                .to_string()
        })?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let v = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((v, bin))
        })
        .collect();
    versions.sort();
    versions
        .pop()
        .map(|(_, b)| b)
        .ok_or_else(|| "no initdb under /usr/lib/postgresql/*/bin".into())
}

fn free_port() -> Result<u16, String> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("no free port: {e}"))
}

impl Cluster {
    /// Makes and starts a cluster of its own, removed when this process is gone.
    pub fn start() -> Result<Cluster, String> {
        let bin = bin_dir()?;
        // SAFETY: geteuid has no preconditions.
        let root = unsafe { libc::geteuid() } == 0;
        let as_owner: Vec<String> = if root {
            ["runuser", "-u", "nobody", "--"].map(String::from).to_vec()
        } else {
            Vec::new()
        };
        let base = std::env::temp_dir().join(format!(
            "weft-pg-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::SeqCst)
        ));
        std::fs::create_dir_all(&base).map_err(|e| format!("{}: {e}", base.display()))?;
        set_mode(&base, 0o777)?;
        let pwfile = base.join("pw");
        std::fs::write(&pwfile, PASSWORD).map_err(|e| e.to_string())?;
        set_mode(&pwfile, 0o644)?;
        let data = base.join("data");
        let cluster = Cluster {
            bin,
            data,
            port: free_port()?,
            as_owner,
        };
        cluster.watch(&base)?;
        cluster.run(
            "initdb",
            &[
                "-D",
                &cluster.data.display().to_string(),
                "-U",
                USER,
                &format!("--pwfile={}", pwfile.display()),
                "--auth-host=scram-sha-256",
                "--auth-local=trust",
                "-E",
                "UTF8",
                "--no-sync",
            ],
        )?;
        cluster.start_server()?;
        Ok(cluster)
    }

    /// Like [`Cluster::start`], but serving TLS only: a throwaway CA signs a server
    /// certificate for the IP address 127.0.0.1 (no host name), and `pg_hba.conf` admits TCP
    /// connections only over TLS. Returns the CA's certificate (PEM) beside the cluster.
    pub fn start_with_tls() -> Result<(Cluster, PathBuf), String> {
        let cluster = Cluster::start()?;
        cluster.stop_server()?;
        let base = cluster
            .data
            .parent()
            .ok_or("the cluster has no base directory")?
            .to_path_buf();
        let ca_key = base.join("ca.key");
        let ca = base.join("ca.pem");
        let d = |name: &str| cluster.data.join(name).display().to_string();
        let s = |p: &Path| p.display().to_string();
        let ext = base.join("san.ext");
        std::fs::write(&ext, "subjectAltName = IP:127.0.0.1\n").map_err(|e| e.to_string())?;
        set_mode(&ext, 0o644)?;
        let openssl = |args: &[&str]| -> Result<(), String> {
            let mut argv = cluster.as_owner.clone();
            argv.push("openssl".into());
            argv.extend(args.iter().map(|a| a.to_string()));
            let out = Command::new(&argv[0])
                .args(&argv[1..])
                .current_dir("/")
                .stdin(Stdio::null())
                .output()
                .map_err(|e| format!("cannot run openssl: {e}"))?;
            if out.status.success() {
                Ok(())
            } else {
                Err(format!(
                    "openssl {args:?}: {}",
                    String::from_utf8_lossy(&out.stderr)
                ))
            }
        };
        openssl(&[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=weft test CA",
            "-keyout",
            &s(&ca_key),
            "-out",
            &s(&ca),
        ])?;
        openssl(&[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=weft test server",
            "-keyout",
            &d("server.key"),
            "-out",
            &d("server.csr"),
        ])?;
        openssl(&[
            "x509",
            "-req",
            "-in",
            &d("server.csr"),
            "-CA",
            &s(&ca),
            "-CAkey",
            &s(&ca_key),
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            &s(&ext),
            "-out",
            &d("server.crt"),
        ])?;
        set_mode(&cluster.data.join("server.key"), 0o600)?;
        let conf = cluster.data.join("postgresql.conf");
        let mut text = std::fs::read_to_string(&conf).map_err(|e| e.to_string())?;
        text.push_str("\nssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n");
        std::fs::write(&conf, text).map_err(|e| e.to_string())?;
        let hba = cluster.data.join("pg_hba.conf");
        let text = std::fs::read_to_string(&hba).map_err(|e| e.to_string())?;
        let tls_only: String = text
            .lines()
            .map(|l| match l.strip_prefix("host ") {
                Some(rest) => format!("hostssl {rest}\n"),
                None => format!("{l}\n"),
            })
            .collect();
        std::fs::write(&hba, tls_only).map_err(|e| e.to_string())?;
        cluster.start_server()?;
        Ok((cluster, ca))
    }

    fn run(&self, program: &str, args: &[&str]) -> Result<(), String> {
        let exe = self.bin.join(program).display().to_string();
        let mut argv = self.as_owner.clone();
        argv.push(exe);
        argv.extend(args.iter().map(|a| a.to_string()));
        let out = Command::new(&argv[0])
            .args(&argv[1..])
            .current_dir("/")
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("cannot run {program}: {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "{program} failed: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ))
        }
    }

    /// A detached watchdog: once this process is gone, stop the server and remove its files.
    fn watch(&self, base: &Path) -> Result<(), String> {
        let script = format!(
            "while kill -0 {pid} 2>/dev/null; do sleep 0.5; done; {owner} {pg_ctl} -D {data} stop -m immediate >/dev/null 2>&1; rm -rf {base}",
            pid = std::process::id(),
            owner = self.as_owner.join(" "),
            pg_ctl = self.bin.join("pg_ctl").display(),
            data = self.data.display(),
            base = base.display(),
        );
        let mut cmd = Command::new("setsid");
        cmd.args(["sh", "-c", &script])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        cmd.spawn()
            .map(drop)
            .map_err(|e| format!("cannot start the watchdog: {e}"))
    }

    /// Starts the server (again) and waits until it answers.
    pub fn start_server(&self) -> Result<(), String> {
        let options = format!(
            "-p {} -h 127.0.0.1 -k {} -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200",
            self.port,
            self.data.display()
        );
        self.run(
            "pg_ctl",
            &[
                "-D",
                &self.data.display().to_string(),
                "-o",
                &options,
                "-l",
                &self.data.join("log.txt").display().to_string(),
                "-w",
                "-t",
                "60",
                "start",
            ],
        )?;
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            if Instant::now() > deadline {
                return Err("the server did not start listening".into());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    }

    /// Stops the server (fast shutdown: connections are cut).
    pub fn stop_server(&self) -> Result<(), String> {
        self.run(
            "pg_ctl",
            &[
                "-D",
                &self.data.display().to_string(),
                "-m",
                "fast",
                "-w",
                "stop",
            ],
        )
    }

    /// The URL of database `db` for `user`/`password`.
    pub fn url_for(&self, user: &str, password: &str, db: &str) -> String {
        format!("postgres://{user}:{password}@127.0.0.1:{}/{db}", self.port)
    }

    /// Creates database `name`; returns the superuser's URL of it.
    pub fn create_database(&self, name: &str) -> String {
        psql(
            &self.url_for(USER, PASSWORD, "postgres"),
            &format!("CREATE DATABASE {name}"),
        );
        self.url_for(USER, PASSWORD, name)
    }
}

fn set_mode(path: &Path, mode: u32) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(|e| format!("{}: {e}", path.display()))
}
