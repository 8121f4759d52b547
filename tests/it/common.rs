//! Shared helpers: the Docker gate, the runner image, temporary project roots.

use std::sync::OnceLock;
use std::time::Duration;

use takehome::sandbox::image::{BuildMethod, Recipe};
use takehome::sandbox::DockerSandbox;

pub use super::cluster_support::{repo_root, takehome_binary};

/// Connects to Docker, or explains why not: a failure under TAKEHOME_REQUIRE_DOCKER=1, a printed
/// skip otherwise.
pub async fn docker() -> Option<DockerSandbox> {
    match DockerSandbox::connect().await {
        Ok(sandbox) => Some(sandbox),
        Err(error) => {
            if std::env::var("TAKEHOME_REQUIRE_DOCKER").as_deref() == Ok("1") {
                panic!("Docker is required (TAKEHOME_REQUIRE_DOCKER=1) but unreachable: {error}");
            }
            eprintln!("SKIPPED: this test needs Docker, which is unreachable here: {error}");
            None
        }
    }
}

/// The `python` runner image (tag, id), built once per test run if the engine lacks it.
pub async fn python_image(sandbox: &DockerSandbox) -> (String, String) {
    static IMAGE: OnceLock<(String, String)> = OnceLock::new();
    static BUILD: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    if let Some(image) = IMAGE.get() {
        return image.clone();
    }
    let _building = BUILD.lock().await;
    if let Some(image) = IMAGE.get() {
        return image.clone();
    }
    let recipe = Recipe::load(&repo_root(), "python").expect("the python recipe");
    let built = sandbox.ensure_image(&recipe, BuildMethod::Auto, &|line| eprintln!("image: {line}")).await.expect("the python runner image builds");
    IMAGE.get_or_init(|| (built.tag, built.id)).clone()
}

/// A runner image other than `python` (tag), built if the engine lacks it (python-slim or r: a
/// few GB from PyPI or Debian, minutes).
pub async fn runner_image(sandbox: &DockerSandbox, name: &str) -> String {
    static BUILD: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    let _building = BUILD.lock().await;
    let recipe = Recipe::load(&repo_root(), name).expect("the recipe");
    sandbox.ensure_image(&recipe, BuildMethod::Auto, &|line| eprintln!("image {name}: {line}")).await.expect("the runner image builds").tag
}

/// Writes `files` (relative path, contents) under a fresh folder.
pub fn folder_with(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (path, body) in files {
        let path = dir.path().join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, body).unwrap();
    }
    dir
}

/// How many containers carry `label` (like `takehome.job=abc`), running or not.
pub async fn containers_with_label(sandbox: &DockerSandbox, label: &str) -> usize {
    sandbox.count_labelled(label).await.expect("list containers")
}

/// Polls `check` every 200 ms until it is true or `limit` passes.
pub async fn wait_until<F, Fut>(limit: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + limit;
    while tokio::time::Instant::now() < deadline {
        if check().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    false
}

/// Copies `from` into `to`: folders and regular files only (a link is left out).
pub fn copy_tree(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let kind = entry.file_type().unwrap();
        if kind.is_dir() {
            copy_tree(&entry.path(), &to.join(entry.file_name()));
        } else if kind.is_file() {
            std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
        }
    }
}

/// A step's captured log holding `text` (for fake sandboxes).
pub fn captured(text: &str) -> takehome::sandbox::CapturedLog {
    let mut log = takehome::sandbox::CapturedLog::new(1 << 20);
    log.push(text.as_bytes());
    log
}

fn openssl(dir: &std::path::Path, args: &[&str]) {
    let out = std::process::Command::new("openssl").args(args).current_dir(dir).output().expect("openssl (Debian's, on every CI host)");
    assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// A CA (`ca.pem`) and a server certificate for `localhost` only (`server.pem`, `server.key`),
/// made with openssl in `dir`.
pub fn tls_certificates(dir: &std::path::Path) {
    let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"];
    openssl(dir, &[&["req", "-x509"][..], &ec, &["-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=takehome test CA"]].concat());
    openssl(dir, &[&["req"][..], &ec, &["-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=localhost"]].concat());
    std::fs::write(dir.join("ext.cnf"), "subjectAltName=DNS:localhost\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n").unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.pem",
            "-days",
            "2",
            "-extfile",
            "ext.cnf",
        ],
    );
}

/// The Python of `target/test-venv`, with the test servers of `tests/servers/requirements.txt`
/// (aiosmtpd, oidc-provider-mock) installed from PyPI the first time (`.ci/run` makes it before the tests).
pub fn test_python() -> std::path::PathBuf {
    static READY: OnceLock<std::path::PathBuf> = OnceLock::new();
    READY
        .get_or_init(|| {
            let root = repo_root();
            let venv = root.join("target/test-venv");
            let requirements = root.join("tests/servers/requirements.txt");
            let wanted = std::fs::read_to_string(&requirements).unwrap();
            let marker = venv.join("installed.txt");
            if std::fs::read_to_string(&marker).ok().as_deref() != Some(wanted.as_str()) {
                let run = |program: &std::path::Path, args: &[&str]| {
                    let out = std::process::Command::new(program).args(args).output().unwrap_or_else(|e| panic!("{}: {e}", program.display()));
                    assert!(
                        out.status.success(),
                        "{} {args:?}: {}{}",
                        program.display(),
                        String::from_utf8_lossy(&out.stdout),
                        String::from_utf8_lossy(&out.stderr)
                    );
                };
                run(std::path::Path::new("python3"), &["-m", "venv", venv.to_str().unwrap()]);
                run(&venv.join("bin/pip"), &["install", "-q", "--disable-pip-version-check", "-r", requirements.to_str().unwrap()]);
                std::fs::write(&marker, wanted).unwrap();
            }
            venv.join("bin/python")
        })
        .clone()
}
