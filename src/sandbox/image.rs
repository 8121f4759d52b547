//! Runner images: recipes under `runner-images/<name>/`, tagged with a digest of the recipe so
//! that an unchanged recipe is never rebuilt.
//!
//! Two ways to build a recipe:
//! - `offline`: `build-rootfs.sh OUT.tar` makes a root file system from the Debian and PyPI
//!   archives (debootstrap + pip), then the engine imports it (`docker import`, with the
//!   instructions of `import.changes`). For machines that reach no container registry.
//! - `dockerfile`: the recipe's Dockerfile, built by the engine (needs its base image pullable).

use std::path::{Path, PathBuf};
use std::process::Stdio;

use bollard::query_parameters::{BuildImageOptions, CreateImageOptions, ListImagesOptions, RemoveImageOptions};
use futures_util::StreamExt;
use sha2::Digest as _;
use tokio::io::{AsyncBufReadExt, AsyncReadExt};

use super::{api, DockerSandbox, RunError};

/// Image repositories of ours are `takehome/<name>`.
pub const REPOSITORY_PREFIX: &str = "takehome/";
pub const RECIPE_LABEL: &str = "takehome.recipe";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BuildMethod {
    /// Offline when debootstrap is on this machine, else the Dockerfile.
    Auto,
    Offline,
    Dockerfile,
}

#[derive(Debug, Clone)]
pub struct Recipe {
    pub name: String,
    pub dir: PathBuf,
    /// The folder of the recipe it extends, if any (its `import.changes` serve where this one
    /// has none).
    pub base_dir: Option<PathBuf>,
    /// sha256 over the recipe's file names and contents.
    pub digest: String,
}

impl Recipe {
    /// Reads `runner-images/<name>/` under `root`. A recipe that builds on another (its
    /// `extends` file names it, as python names python-slim) has a digest over both, so that a
    /// change to the base rebuilds it too.
    pub fn load(root: &Path, name: &str) -> Result<Recipe, RunError> {
        Self::load_within(root, name, 0)
    }

    fn load_within(root: &Path, name: &str, depth: usize) -> Result<Recipe, RunError> {
        let dir = root.join("runner-images").join(name);
        if !crate::task::is_name(name) || !dir.is_dir() {
            return Err(RunError::Image(format!("no runner image recipe {name:?} (expected a folder {})", dir.display())));
        }
        let mut digest = crate::digest::tree_digest(&dir).map_err(|error| RunError::Image(format!("{}: {error}", dir.display())))?;
        let mut base_dir = None;
        if let Ok(base) = std::fs::read_to_string(dir.join("extends")) {
            let base = base.trim();
            if depth > 3 {
                return Err(RunError::Image(format!("{}: recipes extend each other more than 4 deep", dir.join("extends").display())));
            }
            let base = Self::load_within(root, base, depth + 1)
                .map_err(|error| RunError::Image(format!("{}: names {base:?}: {}", dir.join("extends").display(), crate::errors::Chain(&error))))?;
            digest = hex::encode(sha2::Sha256::digest(format!("{digest}\n{}", base.digest).as_bytes()));
            base_dir = Some(base.dir);
        }
        Ok(Recipe { name: name.to_string(), dir, base_dir, digest })
    }

    /// `takehome/python:1a2b3c4d5e6f7a8b`: the tag changes whenever the recipe does.
    pub fn tag(&self) -> String {
        format!("{REPOSITORY_PREFIX}{}:{}", self.name, &self.digest[..16])
    }
}

/// A built image: its tag and the engine's content id (`sha256:…`), which reports record.
#[derive(Debug, Clone)]
pub struct BuiltImage {
    pub tag: String,
    pub id: String,
    pub built_now: bool,
}

/// An image of ours that `images prune` removed or kept, and why.
#[derive(Debug, Clone)]
pub struct Pruned {
    pub tag: String,
    pub bytes: u64,
    /// `None`: removed; else why it stays (in use by a container, the engine refused).
    pub kept: Option<String>,
}

impl DockerSandbox {
    /// Removes the images of ours (`takehome/<recipe>:<digest>`) that no current recipe builds:
    /// those of `names` whose tag is not `current` (the recipes' tags now). An image a container
    /// still uses is kept (the engine refuses without force; none is forced). Images of recipes
    /// not named are left alone, except, with `gone_under` (a project folder), those whose recipe
    /// folder is no longer there (a recipe removed or renamed: python-torch became python).
    pub async fn prune_images(&self, current: &[String], names: &[String], gone_under: Option<&Path>) -> Result<Vec<Pruned>, RunError> {
        let options = ListImagesOptions { all: false, ..Default::default() };
        let images = api("list images", self.docker.list_images(Some(options))).await?;
        let mut out = Vec::new();
        for image in images {
            for tag in &image.repo_tags {
                let Some(rest) = tag.strip_prefix(REPOSITORY_PREFIX) else { continue };
                let Some((name, _)) = rest.split_once(':') else { continue };
                let gone = gone_under.is_some_and(|root| crate::task::is_name(name) && !root.join("runner-images").join(name).is_dir());
                if !(gone || names.iter().any(|n| n == name)) || current.contains(tag) {
                    continue;
                }
                let bytes = u64::try_from(image.size).unwrap_or(0);
                let removed =
                    api("remove image", self.docker.remove_image(tag, Some(RemoveImageOptions { force: false, noprune: false, ..Default::default() }), None))
                        .await;
                out.push(Pruned { tag: tag.clone(), bytes, kept: removed.err().map(|e| crate::errors::chain(&e)) });
            }
        }
        Ok(out)
    }

    /// The id of the image with this tag, if the engine has it.
    pub async fn image_id(&self, tag: &str) -> Result<Option<String>, RunError> {
        match api("inspect image", self.docker.inspect_image(tag)).await {
            Ok(image) => Ok(image.id),
            Err(RunError::Docker { source: bollard::errors::Error::DockerResponseServerError { status_code: 404, .. }, .. }) => Ok(None),
            Err(error) => Err(error),
        }
    }

    /// A file of an image, at most `cap` bytes, read without running anything: a container is
    /// created from the image (never started), the file copied out of it, the container removed.
    pub async fn image_file(&self, tag: &str, path: &str, cap: u64) -> Result<Vec<u8>, RunError> {
        let name = format!("takehome-read-{}-{}", std::process::id(), super::fresh_suffix());
        let config = bollard::models::ContainerCreateBody {
            image: Some(tag.to_string()),
            cmd: Some(vec!["true".to_string()]),
            network_disabled: Some(true),
            labels: Some(std::collections::HashMap::from([(super::LABEL.to_string(), "1".to_string())])),
            ..Default::default()
        };
        let id = super::create_container(&self.docker, &name, config).await?;
        let options = bollard::query_parameters::DownloadFromContainerOptions { path: path.to_string() };
        let mut stream = self.docker.download_from_container(&id, Some(options));
        let mut archive = Vec::new();
        let mut failed = None;
        while let Some(item) = stream.next().await {
            match item {
                Ok(chunk) if (archive.len() + chunk.len()) as u64 <= cap + 64 * 1024 => archive.extend_from_slice(&chunk),
                Ok(_) => {
                    failed = Some(RunError::Image(format!("{tag}: {path} is larger than {}", crate::units::format_size(cap))));
                    break;
                }
                Err(source) => {
                    failed = Some(RunError::Docker { action: "copy from container", source });
                    break;
                }
            }
        }
        drop(stream);
        super::remove_container(&self.docker, &id).await?;
        if let Some(error) = failed {
            return Err(error);
        }
        let mut entries = tar::Archive::new(archive.as_slice());
        let mut entry = entries
            .entries()
            .ok()
            .and_then(|mut e| e.next())
            .and_then(Result::ok)
            .ok_or_else(|| RunError::Image(format!("{tag}: {path}: not in the image")))?;
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut std::io::Read::take(&mut entry, cap), &mut bytes)
            .map_err(|error| RunError::Image(format!("{tag}: {path}: {error}")))?;
        Ok(bytes)
    }

    /// Builds the recipe's image unless the engine already has it. `progress` gets one line per stage.
    pub async fn ensure_image(&self, recipe: &Recipe, method: BuildMethod, progress: &(dyn Fn(&str) + Sync)) -> Result<BuiltImage, RunError> {
        let tag = recipe.tag();
        if let Some(id) = self.image_id(&tag).await? {
            return Ok(BuiltImage { tag, id, built_now: false });
        }
        self.build_image(recipe, method, progress).await
    }

    pub async fn build_image(&self, recipe: &Recipe, method: BuildMethod, progress: &(dyn Fn(&str) + Sync)) -> Result<BuiltImage, RunError> {
        let chosen = match method {
            BuildMethod::Auto if which("debootstrap") => BuildMethod::Offline,
            BuildMethod::Auto => BuildMethod::Dockerfile,
            other => other,
        };
        let tag = recipe.tag();
        match chosen {
            BuildMethod::Offline => self.build_offline(recipe, progress).await?,
            _ => match self.build_dockerfile(recipe, progress).await {
                Ok(()) => {}
                // Neither way worked: say both ways out in one sentence.
                Err(error) if method == BuildMethod::Auto => {
                    let cause = match &error {
                        RunError::Docker { source, .. } => source.to_string(),
                        other => crate::errors::chain(other),
                    };
                    return Err(RunError::Image(format!(
                        "cannot build the runner image {tag}: debootstrap is not installed (as root, `apt-get install debootstrap` lets takehome build it offline from Debian's and PyPI's archives) and the engine could not build {} from a registry ({})",
                        recipe.dir.join("Dockerfile").display(),
                        cause.lines().next().unwrap_or("").trim()
                    )));
                }
                Err(error) => return Err(error),
            },
        }
        let id = self.image_id(&tag).await?.ok_or_else(|| RunError::Image(format!("{tag} is missing after its build")))?;
        progress(&format!("built {tag} ({})", &id[..id.len().min(19)]));
        Ok(BuiltImage { tag, id, built_now: true })
    }

    async fn build_offline(&self, recipe: &Recipe, progress: &(dyn Fn(&str) + Sync)) -> Result<(), RunError> {
        let script = recipe.dir.join("build-rootfs.sh");
        if !script.is_file() {
            return Err(RunError::Image(format!("{}: missing (the offline build needs it)", script.display())));
        }
        let scratch = tempfile::Builder::new()
            .prefix("takehome-image-")
            .tempdir_in(std::env::var_os("TAKEHOME_BUILD_DIR").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("/var/tmp")))
            .map_err(|error| RunError::Image(format!("cannot make a scratch folder: {error}")))?;
        let rootfs = scratch.path().join("rootfs.tar");
        progress(&format!("building {} offline with {}", recipe.tag(), script.display()));
        let mut child = tokio::process::Command::new("bash")
            .arg(&script)
            .arg(&rootfs)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|error| RunError::Image(format!("cannot run {}: {error}", script.display())))?;
        let stderr = child.stderr.take().expect("stderr is piped");
        let mut lines = tokio::io::BufReader::new(stderr).lines();
        let mut last_lines: Vec<String> = Vec::new();
        while let Ok(Some(line)) = lines.next_line().await {
            if line.starts_with("build-rootfs:") {
                progress(line.trim_start_matches("build-rootfs:").trim());
            }
            last_lines.push(line);
            if last_lines.len() > 20 {
                last_lines.remove(0);
            }
        }
        let status = child.wait().await.map_err(|error| RunError::Image(format!("{}: {error}", script.display())))?;
        if !status.success() {
            return Err(RunError::Image(format!("{} failed ({status}); its last lines:\n{}", script.display(), last_lines.join("\n"))));
        }

        let own = recipe.dir.join("import.changes");
        let changes_file = match &recipe.base_dir {
            Some(base) if !own.is_file() => base.join("import.changes"),
            _ => own,
        };
        let mut changes: Vec<String> = std::fs::read_to_string(&changes_file)
            .unwrap_or_default()
            .lines()
            .map(str::trim)
            .filter(|line| !line.is_empty() && !line.starts_with('#'))
            .map(String::from)
            .collect();
        changes.push(format!("LABEL {RECIPE_LABEL}={}", recipe.digest));
        changes.push(format!("LABEL {}=1", super::LABEL));
        let size = std::fs::metadata(&rootfs).map(|m| m.len()).unwrap_or(0);
        progress(&format!("importing the root file system ({})", crate::units::format_size(size)));
        let file = tokio::fs::File::open(&rootfs).await.map_err(|error| RunError::Image(format!("{}: {error}", rootfs.display())))?;
        let body = futures_util::stream::unfold(file, |mut file| async move {
            let mut buffer = vec![0u8; 1 << 20];
            match file.read(&mut buffer).await {
                Ok(0) | Err(_) => None,
                Ok(n) => {
                    buffer.truncate(n);
                    Some((bytes::Bytes::from(buffer), file))
                }
            }
        });
        let tag = recipe.tag();
        let (repository, version) = tag.split_once(':').expect("tags have a colon");
        let options = CreateImageOptions {
            from_src: Some("-".to_string()),
            repo: Some(repository.to_string()),
            tag: Some(version.to_string()),
            changes,
            ..Default::default()
        };
        let mut stream = self.docker.create_image(Some(options), Some(bollard::body_stream(body)), None);
        while let Some(item) = stream.next().await {
            item.map_err(|source| RunError::Docker { action: "import image", source })?;
        }
        Ok(())
    }

    async fn build_dockerfile(&self, recipe: &Recipe, progress: &(dyn Fn(&str) + Sync)) -> Result<(), RunError> {
        progress(&format!("building {} from {}", recipe.tag(), recipe.dir.join("Dockerfile").display()));
        let context = build_context(recipe)?;
        let options = BuildImageOptions {
            dockerfile: "Dockerfile".to_string(),
            t: Some(recipe.tag()),
            rm: true,
            forcerm: true,
            labels: Some(std::collections::HashMap::from([(RECIPE_LABEL.to_string(), recipe.digest.clone()), (super::LABEL.to_string(), "1".to_string())])),
            ..Default::default()
        };
        let mut stream = self.docker.build_image(options, None, Some(bollard::body_full(context.into())));
        while let Some(item) = stream.next().await {
            let info = item.map_err(|source| RunError::Docker { action: "build image", source })?;
            if let Some(line) = info.stream.as_deref().map(str::trim).filter(|line| line.starts_with("Step ")) {
                progress(line);
            }
        }
        Ok(())
    }
}

/// The Dockerfile build's context: the files of the recipe it extends, if any, then its own,
/// which replace the base's of the same name (so python, which has no Dockerfile and no notebook
/// runner of its own, builds with python-slim's and its own requirements.txt). Plain files at the
/// top of each folder only: a recipe is a flat folder, and no link is followed.
fn build_context(recipe: &Recipe) -> Result<Vec<u8>, RunError> {
    let mut files = std::collections::BTreeMap::new();
    for dir in recipe.base_dir.iter().chain([&recipe.dir]) {
        let entries = std::fs::read_dir(dir).map_err(|error| RunError::Image(format!("cannot read {}: {error}", dir.display())))?;
        for entry in entries {
            let entry = entry.map_err(|error| RunError::Image(format!("cannot read {}: {error}", dir.display())))?;
            if entry.file_type().is_ok_and(|kind| kind.is_file()) {
                files.insert(entry.file_name(), entry.path());
            }
        }
    }
    let mut context = tar::Builder::new(Vec::new());
    for (name, path) in &files {
        context.append_path_with_name(path, name).map_err(|error| RunError::Image(format!("cannot pack {}: {error}", path.display())))?;
    }
    context.into_inner().map_err(|error| RunError::Image(format!("cannot pack the build context: {error}")))
}

fn which(program: &str) -> bool {
    std::env::var_os("PATH").map(|paths| std::env::split_paths(&paths).any(|dir| dir.join(program).is_file())).unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `python` has no Dockerfile of its own: its registry build takes python-slim's Dockerfile
    /// and notebook runner with its own requirements.txt (the deep learning list).
    #[test]
    fn an_extending_recipe_builds_with_its_base_files_and_its_own_over_them() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let recipe = Recipe::load(root, "python").unwrap();
        let context = build_context(&recipe).unwrap();
        let mut files = std::collections::BTreeMap::new();
        for entry in tar::Archive::new(context.as_slice()).entries().unwrap() {
            let mut entry = entry.unwrap();
            let mut text = String::new();
            std::io::Read::read_to_string(&mut entry, &mut text).unwrap();
            files.insert(entry.path().unwrap().display().to_string(), text);
        }
        for name in ["Dockerfile", "takehome-notebook", "requirements.txt", "modules", "import.changes"] {
            assert!(files.contains_key(name), "{name} in {:?}", files.keys());
        }
        assert!(files["requirements.txt"].lines().any(|line| line.starts_with("torch==")), "python's own list, not python-slim's");
        assert_eq!(files["Dockerfile"], std::fs::read_to_string(root.join("runner-images/python-slim/Dockerfile")).unwrap());
    }
}
