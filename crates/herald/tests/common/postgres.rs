//! A private PostgreSQL for a test: `initdb` in a fresh directory, the server on a free loopback
//! port as the `postgres` user (spec/durable-and-ui.md §4), stopped and removed on drop. Needs
//! Debian's `postgresql` package, which scripts/test.sh installs when it is missing.

use std::path::PathBuf;
use std::process::{Command, Stdio};

pub struct Postgres {
    dir: PathBuf,
    bin: PathBuf,
    pub url: String,
}

fn bin_dir() -> PathBuf {
    let out = Command::new("pg_config")
        .arg("--bindir")
        .output()
        .unwrap_or_else(|e| panic!("pg_config is missing ({e}): run scripts/test.sh, which installs postgresql"));
    PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
}

fn as_postgres(bin: &std::path::Path, tool: &str, args: &[&str]) {
    let out = Command::new("runuser")
        .args(["-u", "postgres", "--"])
        .arg(bin.join(tool))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{tool} {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Postgres {
    pub fn start() -> Postgres {
        let bin = bin_dir();
        let dir = super::temp_dir("pg");
        Command::new("chown")
            .args(["postgres:postgres"])
            .arg(&dir)
            .status()
            .unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
            .to_string();
        let data = dir.join("data");
        let data = data.to_str().unwrap();
        as_postgres(
            &bin,
            "initdb",
            &[
                "-D",
                data,
                "-U",
                "herald",
                "--auth=trust",
                "-E",
                "UTF8",
                "--locale=C.UTF-8",
                "--no-instructions",
            ],
        );
        let log = dir.join("server.log");
        let options = format!(
            "-c listen_addresses=127.0.0.1 -p {port} -k {} -c max_connections=100 -c fsync=off -c synchronous_commit=off -c full_page_writes=off",
            dir.display()
        );
        as_postgres(
            &bin,
            "pg_ctl",
            &[
                "-D",
                data,
                "-l",
                log.to_str().unwrap(),
                "-w",
                "-t",
                "30",
                "-o",
                &options,
                "start",
            ],
        );
        as_postgres(
            &bin,
            "createdb",
            &["-h", "127.0.0.1", "-p", &port, "-U", "herald", "herald_test"],
        );
        Postgres {
            url: format!("postgres://herald@127.0.0.1:{port}/herald_test"),
            dir,
            bin,
        }
    }

    /// Runs SQL with psql.
    pub fn psql(&self, sql: &str) -> String {
        let out = Command::new(self.bin.join("psql"))
            .args([&self.url, "-At", "-c", sql])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let data = self.dir.join("data");
        let _ = Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(self.bin.join("pg_ctl"))
            .args(["-D", data.to_str().unwrap(), "-m", "immediate", "-w", "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
