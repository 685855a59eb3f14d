//! A certificate authority of a test's own, made with `openssl`: a server certificate it signs for
//! 127.0.0.1, and a second CA that signed nothing, for the client that must be refused.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The files of a test CA in one folder: `ca.pem`, `server.pem` and `server.key` (PKCS#8, for
/// 127.0.0.1 and `localhost`), and `other-ca.pem`.
pub(crate) struct TestCa {
    dir: PathBuf,
}

impl TestCa {
    /// Makes the CA, the server's certificate and the other CA in `dir` (created if missing).
    pub(crate) fn create(dir: &Path) -> Self {
        std::fs::create_dir_all(dir).unwrap();
        let openssl = |args: &[&str]| {
            let out = Command::new("openssl")
                .args(args)
                .current_dir(dir)
                .output()
                .expect("openssl (package openssl) must be installed");
            assert!(
                out.status.success(),
                "openssl {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        let self_signed = |name: &str| {
            let (key, cert) = (format!("{name}.key"), format!("{name}.pem"));
            openssl(&[
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-days",
                "2",
                "-subj",
                &format!("/CN={name}"),
                "-keyout",
                &key,
                "-out",
                &cert,
            ]);
        };
        self_signed("ca");
        self_signed("other-ca");
        std::fs::write(
            dir.join("san.ext"),
            "subjectAltName=IP:127.0.0.1,DNS:localhost\n",
        )
        .unwrap();
        openssl(&[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=127.0.0.1",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
        ]);
        openssl(&[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "san.ext",
            "-out",
            "server.pem",
        ]);
        Self {
            dir: dir.to_path_buf(),
        }
    }

    /// One of the files named above.
    pub(crate) fn file(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}
