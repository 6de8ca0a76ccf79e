//! Builds on Docker: LAIN's prepare, build and release images from the uploaded context, through
//! the engine's build API (the context is sent as an in-memory tar with generated Dockerfiles).
//!
//! - prepare (if any): `FROM base`, the context in `/lain/app`, the prepare scripts, then only the
//!   `keep` entries stay; tagged `<app>:prepare-<version>` ([`crate::runtime::prepare_key`]) and
//!   reused while that tag exists;
//! - build: `FROM` the prepare image (or base), the context in `/lain/app`, the build scripts;
//!   tagged `<app>:build-<release>`. With `build.volumes` the scripts run in a container of that
//!   stage instead, each path an engine volume of the app's ([`build_volume_name`]) kept between
//!   its builds, and the container is committed as the build image;
//! - release: the build image re-tagged, or, with `release.dest_base`/`copy`/`script`, a
//!   multi-stage image (`release.script` runs in the build stage, then `copy` moves files into
//!   `dest_base`); tagged `<app>:release-<release>`, which instances run;
//! - test (with `test.script`): `FROM` the build image, the test scripts; tagged
//!   `<app>:test-<release>`. A failing test script fails the build, so no release is recorded.

use crate::runtime::{BuildProgress, BuildRequest, RuntimeError, build_args};
use bollard::Docker;
use futures::StreamExt;
use std::collections::HashMap;
use std::fmt::Write as _;

/// Where the generated Dockerfiles sit in the context.
const DOCKERFILES: &str = ".lain-dockerfiles";

/// Builds the release images of `request` on `docker`; returns the release image tag.
pub async fn build(
    docker: &Docker,
    request: &BuildRequest<'_>,
    progress: &mut (dyn FnMut(BuildProgress) + Send),
) -> Result<String, RuntimeError> {
    let app = request.spec;
    let name = &app.appname;
    let build_tag = format!("{name}:build-{}", request.version);
    let release_tag = format!("{name}:release-{}", request.version);
    let mut args: HashMap<String, String> = HashMap::new();
    for (k, v) in app
        .build
        .prepare
        .iter()
        .flat_map(|p| &p.build_arg)
        .chain(&app.build.build_arg)
    {
        let (value, warning) = build_args::resolve(k, v, request.build_args);
        if let Some(w) = warning {
            progress(BuildProgress::Warning(w));
        }
        args.insert(k.clone(), value);
    }
    let mut files: Vec<(String, String)> = Vec::new();
    let mut base = app.build.base.clone();
    let mut prepare_tag = None;
    if let Some(prepare) = &app.build.prepare {
        let version = crate::runtime::prepare_key(&base, prepare);
        let tag = format!("{name}:prepare-{version}");
        let mut file = stage(&base, &args);
        for line in &prepare.script {
            run(&mut file, line);
        }
        run(&mut file, &keep_only(&prepare.keep));
        files.push(("prepare".into(), file));
        base = tag.clone();
        prepare_tag = Some(tag);
    }
    // With build volumes the scripts run in a container instead (the image builder mounts
    // none), on the stage holding the context.
    let in_container = !app.build.volumes.is_empty();
    let mut file = stage(&base, &args);
    if !in_container {
        for line in &app.build.script {
            run(&mut file, line);
        }
    }
    files.push(("build".into(), file));
    let release = app
        .release
        .as_ref()
        .filter(|r| r.dest_base.is_some() || !r.copy.is_empty() || !r.script.is_empty());
    if let Some(r) = release {
        let mut file = format!("FROM {build_tag} AS build\n");
        for line in &r.script {
            run(&mut file, line);
        }
        if r.dest_base.is_some() || !r.copy.is_empty() {
            let _ = writeln!(
                file,
                "FROM {}",
                r.dest_base.as_deref().unwrap_or(&build_tag)
            );
            for c in &r.copy {
                let _ = writeln!(
                    file,
                    "COPY --from=build {} {}",
                    in_app(&c.src),
                    in_app(&c.dest)
                );
            }
        }
        files.push(("release".into(), file));
    }
    if let Some(test) = app.test.as_ref().filter(|t| !t.script.is_empty()) {
        let mut file = format!("FROM {build_tag}\n");
        for line in &test.script {
            run(&mut file, line);
        }
        files.push(("test".into(), file));
    }
    let context = context_tar(request.context, &files)?;

    for (stage_name, _) in &files {
        let tag = match stage_name.as_str() {
            "prepare" => match &prepare_tag {
                Some(tag) if docker.inspect_image(tag).await.is_ok() => {
                    progress(BuildProgress::Step(format!("prepare: reusing {tag}")));
                    continue;
                }
                Some(tag) => tag.clone(),
                None => continue,
            },
            "build" => build_tag.clone(),
            "test" => format!("{name}:test-{}", request.version),
            _ => release_tag.clone(),
        };
        progress(BuildProgress::Step(format!("{stage_name}: building {tag}")));
        let options = bollard::query_parameters::BuildImageOptions {
            dockerfile: format!("{DOCKERFILES}/{stage_name}"),
            t: Some(tag.clone()),
            rm: true,
            forcerm: true,
            buildargs: Some(args.clone()),
            ..Default::default()
        };
        let body = bollard::body_full(context.clone().into());
        let mut stream = docker.build_image(options, None, Some(body));
        while let Some(item) = stream.next().await {
            let info = item.map_err(|e| RuntimeError::Failed(format!("{stage_name}: {e}")))?;
            if let Some(detail) = info.error_detail {
                return Err(RuntimeError::Failed(format!(
                    "{stage_name}: {}",
                    detail.message.unwrap_or_default()
                )));
            }
            if let Some(text) = info.stream {
                for line in text.lines().filter(|l| !l.trim().is_empty()) {
                    progress(BuildProgress::Output(line.to_string()));
                }
            }
        }
        if stage_name == "build" && in_container {
            let script = Scripted {
                app: name,
                image: &build_tag,
                volumes: &app.build.volumes,
                script: &app.build.script,
                args: &args,
            };
            script.run(docker, progress).await?;
        }
    }
    if release.is_none() {
        let options = bollard::query_parameters::TagImageOptions {
            repo: Some(name.clone()),
            tag: Some(format!("release-{}", request.version)),
        };
        docker
            .tag_image(&build_tag, Some(options))
            .await
            .map_err(|e| RuntimeError::Failed(format!("tagging {release_tag}: {e}")))?;
    }
    progress(BuildProgress::Step(format!("release image {release_tag}")));
    Ok(release_tag)
}

/// Tags `image` (`<app>:<tag>`) as `<registry>/<app>:<tag>` and pushes it; returns the pushed
/// name, which nodes then pull.
pub async fn push(
    docker: &Docker,
    image: &str,
    registry: &str,
    progress: &mut (dyn FnMut(BuildProgress) + Send),
) -> Result<String, RuntimeError> {
    let (name, tag) = image.rsplit_once(':').unwrap_or((image, "latest"));
    let repo = format!("{registry}/{name}");
    let options = bollard::query_parameters::TagImageOptions {
        repo: Some(repo.clone()),
        tag: Some(tag.to_string()),
    };
    docker
        .tag_image(image, Some(options))
        .await
        .map_err(|e| RuntimeError::Failed(format!("tagging {repo}:{tag}: {e}")))?;
    progress(BuildProgress::Step(format!("pushing {repo}:{tag}")));
    let options = bollard::query_parameters::PushImageOptions {
        tag: Some(tag.to_string()),
        ..Default::default()
    };
    let mut stream = docker.push_image(&repo, Some(options), None);
    while let Some(item) = stream.next().await {
        let info = item.map_err(|e| RuntimeError::Failed(format!("push {repo}:{tag}: {e}")))?;
        if let Some(detail) = info.error_detail {
            return Err(RuntimeError::Failed(format!(
                "push {repo}:{tag}: {}",
                detail.message.unwrap_or_default()
            )));
        }
    }
    Ok(format!("{repo}:{tag}"))
}

/// Label of an app's build volumes (its value: the app), how an operator finds them.
pub const BUILD_CACHE_LABEL: &str = "lain.build-cache";

/// Where the script of a build with volumes is put in its container (it removes itself).
const SCRIPT_FILE: &str = ".lain-build.sh";

/// The engine volume holding build volume `path` of `app`: `lain-build.<app>.<digest of path>`.
pub fn build_volume_name(app: &str, path: &str) -> String {
    use sha2::Digest as _;
    let digest = sha2::Sha256::digest(path.as_bytes());
    format!("lain-build.{app}.{}", hex::encode(&digest[..6]))
}

/// The build scripts of an app with `build.volumes`: run in a container of the build stage's
/// image with each volume mounted (an engine volume per app and path, kept between builds),
/// then committed as that image with its own configuration (nothing of the run's).
struct Scripted<'a> {
    app: &'a str,
    image: &'a str,
    volumes: &'a [String],
    script: &'a [String],
    args: &'a HashMap<String, String>,
}

impl Scripted<'_> {
    async fn run(
        &self,
        docker: &Docker,
        progress: &mut (dyn FnMut(BuildProgress) + Send),
    ) -> Result<(), RuntimeError> {
        use bollard::models::{ContainerCreateBody, HostConfig, Mount, MountType};
        let failed = |what: &str| {
            let what = what.to_string();
            move |e: bollard::errors::Error| RuntimeError::Failed(format!("build: {what}: {e}"))
        };
        let mut mounts = Vec::new();
        for path in self.volumes {
            let name = build_volume_name(self.app, path);
            let request = bollard::models::VolumeCreateRequest {
                name: Some(name.clone()),
                labels: Some(HashMap::from([
                    (BUILD_CACHE_LABEL.to_string(), self.app.to_string()),
                    ("lain.path".to_string(), path.clone()),
                ])),
                ..Default::default()
            };
            docker
                .create_volume(request)
                .await
                .map_err(failed(&format!("volume {name}")))?;
            mounts.push(Mount {
                target: Some(path.clone()),
                source: Some(name),
                typ: Some(MountType::VOLUME),
                ..Default::default()
            });
        }
        progress(BuildProgress::Step(format!(
            "build: running the scripts with build.volumes {}",
            self.volumes.join(", ")
        )));
        let config = docker
            .inspect_image(self.image)
            .await
            .map_err(failed(self.image))?
            .config
            .unwrap_or_default();
        // The entrypoint replaces the image's (and so its command): RUN ignores both too.
        let body = ContainerCreateBody {
            image: Some(self.image.to_string()),
            entrypoint: Some(vec!["/bin/sh".into(), format!("/{SCRIPT_FILE}")]),
            working_dir: Some("/lain/app".into()),
            host_config: Some(HostConfig {
                mounts: Some(mounts),
                ..Default::default()
            }),
            ..Default::default()
        };
        let id = docker
            .create_container(None, body)
            .await
            .map_err(failed("creating the build container"))?
            .id;
        let result = self.in_container(docker, &id, config, progress).await;
        let options = bollard::query_parameters::RemoveContainerOptions {
            force: true,
            ..Default::default()
        };
        let _ = docker.remove_container(&id, Some(options)).await;
        result
    }

    /// Puts the script in container `id`, runs it (its output streamed), and commits the
    /// container as the image with the image's own `config`.
    async fn in_container(
        &self,
        docker: &Docker,
        id: &str,
        config: bollard::models::ImageConfig,
        progress: &mut (dyn FnMut(BuildProgress) + Send),
    ) -> Result<(), RuntimeError> {
        let failed = |what: &'static str| {
            move |e: bollard::errors::Error| RuntimeError::Failed(format!("build: {what}: {e}"))
        };
        let tar = script_tar(&self.script_text())
            .map_err(|e| RuntimeError::Failed(format!("build: the script: {e}")))?;
        let options = bollard::query_parameters::UploadToContainerOptions {
            path: "/".into(),
            ..Default::default()
        };
        docker
            .upload_to_container(id, Some(options), bollard::body_full(tar.into()))
            .await
            .map_err(failed("placing the script"))?;
        docker
            .start_container(id, None::<bollard::query_parameters::StartContainerOptions>)
            .await
            .map_err(failed("starting the build container"))?;
        let options = bollard::query_parameters::LogsOptions {
            follow: true,
            stdout: true,
            stderr: true,
            ..Default::default()
        };
        let mut logs = docker.logs(id, Some(options));
        let mut partial = String::new();
        while let Some(Ok(chunk)) = logs.next().await {
            partial.push_str(&String::from_utf8_lossy(&chunk.into_bytes()));
            while let Some(end) = partial.find('\n') {
                let line: String = partial.drain(..=end).collect();
                progress(BuildProgress::Output(line.trim_end().to_string()));
            }
        }
        if !partial.is_empty() {
            progress(BuildProgress::Output(partial.trim_end().to_string()));
        }
        let code = match docker
            .wait_container(id, None::<bollard::query_parameters::WaitContainerOptions>)
            .next()
            .await
        {
            Some(Ok(status)) => status.status_code,
            Some(Err(bollard::errors::Error::DockerContainerWaitError { code, .. })) => code,
            Some(Err(e)) => return Err(failed("waiting for the build container")(e)),
            None => -1,
        };
        if code != 0 {
            return Err(RuntimeError::Failed(format!(
                "build: the scripts exited with {code}"
            )));
        }
        let (repo, tag) = self
            .image
            .rsplit_once(':')
            .unwrap_or((self.image, "latest"));
        let options = bollard::query_parameters::CommitContainerOptions {
            container: Some(id.to_string()),
            repo: Some(repo.to_string()),
            tag: Some(tag.to_string()),
            ..Default::default()
        };
        // An explicit (possibly empty) entrypoint, so the engine keeps none of the run's.
        let config = bollard::models::ContainerConfig {
            user: config.user,
            env: config.env,
            cmd: config.cmd,
            entrypoint: Some(config.entrypoint.unwrap_or_default()),
            working_dir: config.working_dir,
            ..Default::default()
        };
        docker
            .commit_container(options, config)
            .await
            .map_err(failed("committing the build"))?;
        Ok(())
    }

    /// The script: it removes itself, exports the build arguments, and runs each line through
    /// `sh -ec` in `/lain/app` (as a `RUN` would), stopping at the first that fails.
    fn script_text(&self) -> String {
        let mut text = format!("set -e\nrm -f /{SCRIPT_FILE}\n");
        let mut names: Vec<&String> = self.args.keys().collect();
        names.sort();
        for name in names {
            let _ = writeln!(
                text,
                "export {name}={}",
                shell_words::quote(&self.args[name])
            );
        }
        for line in self.script {
            let _ = writeln!(
                text,
                "echo {}\ncd /lain/app && /bin/sh -ec {}",
                shell_words::quote(&format!("+ {line}")),
                shell_words::quote(line)
            );
        }
        text
    }
}

/// A tar holding `script` as [`SCRIPT_FILE`].
fn script_tar(script: &str) -> std::io::Result<Vec<u8>> {
    let mut b = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_gnu();
    header.set_size(script.len() as u64);
    header.set_mode(0o700);
    header.set_cksum();
    b.append_data(&mut header, SCRIPT_FILE, script.as_bytes())?;
    b.into_inner()
}

/// A stage starting `FROM base` with the build arguments and the context in `/lain/app`.
fn stage(base: &str, args: &HashMap<String, String>) -> String {
    let mut file = format!("FROM {base}\n");
    let mut names: Vec<&String> = args.keys().collect();
    names.sort();
    for name in names {
        let _ = writeln!(file, "ARG {name}");
    }
    file.push_str("WORKDIR /lain/app\nCOPY . /lain/app/\n");
    run(&mut file, &format!("rm -rf /lain/app/{DOCKERFILES}"));
    file
}

/// Appends a `RUN` of `line` through `sh -ec` (exec form, so any text is safe).
fn run(file: &mut String, line: &str) {
    let argv = serde_json::json!(["/bin/sh", "-ec", line]);
    let _ = writeln!(file, "RUN {argv}");
}

/// A script leaving only `keep` in `/lain/app` (LAIN's `prepare.keep`).
fn keep_only(keep: &[String]) -> String {
    let patterns: String = keep
        .iter()
        .map(|k| format!(" -e {}", shell_words::quote(k.trim_start_matches("./"))))
        .collect();
    if keep.is_empty() {
        "cd /lain/app && ls -A | xargs -r rm -rf".into()
    } else {
        format!("cd /lain/app && ls -A | grep -vxF{patterns} | xargs -r rm -rf")
    }
}

/// A path of `release.copy`: relative paths are under `/lain/app`.
fn in_app(path: &str) -> String {
    if path.starts_with('/') {
        path.to_string()
    } else {
        format!("/lain/app/{path}")
    }
}

/// The context directory as a tar, with the generated Dockerfiles added.
fn context_tar(dir: &std::path::Path, files: &[(String, String)]) -> Result<Vec<u8>, RuntimeError> {
    let fail = |e: std::io::Error| RuntimeError::Failed(format!("packing the build context: {e}"));
    let mut b = tar::Builder::new(Vec::new());
    b.follow_symlinks(false);
    b.append_dir_all(".", dir).map_err(fail)?;
    for (name, text) in files {
        let mut header = tar::Header::new_gnu();
        header.set_size(text.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        b.append_data(
            &mut header,
            format!("{DOCKERFILES}/{name}"),
            text.as_bytes(),
        )
        .map_err(fail)?;
    }
    b.into_inner().map_err(fail)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_are_exec_form_and_paths_land_in_the_app() {
        let mut f = String::new();
        run(&mut f, "echo \"a b\" > out");
        assert_eq!(f, "RUN [\"/bin/sh\",\"-ec\",\"echo \\\"a b\\\" > out\"]\n");
        assert_eq!(in_app("dist"), "/lain/app/dist");
        assert_eq!(in_app("/usr/bin/x"), "/usr/bin/x");
        assert_eq!(
            keep_only(&["node_modules".into(), "./a b".into()]),
            "cd /lain/app && ls -A | grep -vxF -e node_modules -e 'a b' | xargs -r rm -rf"
        );
    }

    /// The script of a build with volumes quotes every build argument and line, runs each line
    /// in its own `sh -ec` from `/lain/app`, and removes itself first.
    #[test]
    fn a_build_script_quotes_its_arguments_and_lines() {
        let args = HashMap::from([("B".to_string(), "it's $HOME".to_string())]);
        let script = ["cd sub && echo \"a b\"".to_string()];
        let scripted = Scripted {
            app: "x",
            image: "x:build-1",
            volumes: &[],
            script: &script,
            args: &args,
        };
        assert_eq!(
            scripted.script_text(),
            "set -e\nrm -f /.lain-build.sh\nexport B='it'\\''s $HOME'\n\
             echo '+ cd sub && echo \"a b\"'\ncd /lain/app && /bin/sh -ec 'cd sub && echo \"a b\"'\n"
        );
        assert_ne!(
            build_volume_name("x", "/a_b"),
            build_volume_name("x", "/a/b")
        );
        assert!(build_volume_name("x", "/a").starts_with("lain-build.x."));
    }

    /// The engine gets the context's symlinks as symlinks: nothing they point at outside the
    /// context (a file, a directory, an absolute path) is read into the tar sent to it.
    #[test]
    fn the_engine_context_keeps_links_as_links() {
        use std::os::unix::fs::symlink;
        let root = tempfile::tempdir().expect("tempdir");
        let outside = root.path().join("outside");
        std::fs::create_dir(&outside).expect("outside");
        std::fs::write(outside.join("secret.txt"), "host secret").expect("secret");
        let ctx = root.path().join("ctx");
        std::fs::create_dir(&ctx).expect("ctx");
        std::fs::write(ctx.join("lain.yaml"), "appname: x\n").expect("lain.yaml");
        symlink("../outside/secret.txt", ctx.join("file-link")).expect("link");
        symlink("../outside", ctx.join("dir-link")).expect("link");
        symlink("/etc", ctx.join("abs-link")).expect("link");
        let tar = context_tar(&ctx, &[("build".into(), "FROM scratch\n".into())]).expect("tar");
        let mut archive = tar::Archive::new(&tar[..]);
        let mut links = Vec::new();
        for entry in archive.entries().expect("entries") {
            let mut entry = entry.expect("entry");
            let path = entry.path().expect("path").display().to_string();
            let mut content = String::new();
            std::io::Read::read_to_string(&mut entry, &mut content).ok();
            assert!(!content.contains("host secret"), "{path}");
            assert!(
                !path.contains("-link/"),
                "{path}: a linked directory was walked"
            );
            if entry.header().entry_type() == tar::EntryType::Symlink {
                let target = entry.link_name().expect("link").expect("target");
                links.push((path, target.display().to_string()));
            }
        }
        links.sort();
        assert_eq!(
            links,
            [
                ("abs-link".to_string(), "/etc".to_string()),
                ("dir-link".into(), "../outside".into()),
                ("file-link".into(), "../outside/secret.txt".into()),
            ]
        );
    }
}
