//! Issue 18, security 1 and 7: a volume mounted by name is judged by what the
//! daemon holds under that name (a host bind in disguise, a plugin, a network
//! file system, another caller's data), with the real docker CLI through
//! `portcullis serve`, as a caller pinned to its own socket.

mod common;

use common::*;

fn trust_update(p: &Proxy, id: &str, set: &str) {
    ok(&p.cli(&["trust", "update", id, "--set", set]));
}

/// Containers (with their anonymous volumes), then volumes, removed at the end.
#[derive(Default)]
struct Made {
    containers: Vec<String>,
    volumes: Vec<String>,
}

impl Drop for Made {
    fn drop(&mut self) {
        for c in &self.containers {
            let _ = direct(&["rm", "-f", "-v", c]);
        }
        for v in &self.volumes {
            let _ = direct(&["volume", "rm", "-f", v]);
        }
    }
}

/// A host directory holding a secret file, and a volume that binds it.
fn bind_volume(made: &mut Made) -> (tempfile::TempDir, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let secret = unique("s3cret");
    std::fs::write(dir.path().join("secret.txt"), &secret).unwrap();
    let vol = unique("pc-hostbind");
    made.volumes.push(vol.clone());
    let device = format!("device={}", dir.path().display());
    ok(&direct(&[
        "volume",
        "create",
        "-o",
        "type=none",
        "-o",
        "o=bind",
        "-o",
        &device,
        &vol,
    ]));
    (dir, vol, secret)
}

fn volume_label(vol: &str, key: &str) -> String {
    let format = format!("{{{{index .Labels \"{key}\"}}}}");
    ok(&direct(&["volume", "inspect", "--format", &format, vol]))
        .trim()
        .to_string()
}

/// `-v hostvol:/h`, `--mount type=volume`, `--volumes-from` of a container
/// that mounts it: each is a bind of the volume's host directory, refused to
/// a caller without bind rights, allowed once `allow_bind_mounts` lists it.
#[test]
#[cfg_attr(
    no_docker,
    ignore = "no Docker daemon answers on DOCKER_HOST or /var/run/docker.sock"
)]
fn a_named_volume_that_binds_a_host_path_is_a_bind_of_that_path() {
    engine();
    let img = image();
    let mut made = Made::default();
    let (dir, vol, secret) = bind_volume(&mut made);
    let host_dir = dir.path().display().to_string();
    let (p, host, _sock) = pinned_proxy("volteam", &[]);
    let images = format!("allowed_images=[\"{img}\"]");
    let volumes = format!("volumes=[\"{vol}\"]");
    let id = trust_create(
        &p,
        &[
            "caller_service=volteam",
            "target_container=vt-*",
            "can_create=true",
            &images,
            // Granted as a volume: what is refused is the bind it hides.
            &volumes,
        ],
    );
    let why = format!("bind-mounting host path {host_dir} is not allowed for caller volteam");

    let c1 = unique("vt-bind");
    made.containers.push(c1.clone());
    let bind = format!("{vol}:/h");
    refused(
        &p.docker_at(
            &host,
            &[
                "create",
                "--name",
                &c1,
                "-v",
                &bind,
                img,
                "cat",
                "/h/secret.txt",
            ],
        ),
        &why,
    );
    let mount = format!("type=volume,source={vol},target=/h");
    refused(
        &p.docker_at(
            &host,
            &["create", "--name", &c1, "--mount", &mount, img, "true"],
        ),
        &why,
    );

    // The volumes of a VolumesFrom container are judged the same way, even
    // when the caller may inspect that container.
    let src = unique("vt-src");
    made.containers.push(src.clone());
    ok(&direct(&[
        "create", "--name", &src, "-v", &bind, img, "true",
    ]));
    refused(
        &p.docker_at(
            &host,
            &["create", "--name", &c1, "--volumes-from", &src, img, "true"],
        ),
        &why,
    );

    // A name the daemon does not know is created empty: fine.
    let fresh = unique("pc-fresh");
    made.volumes.push(fresh.clone());
    let c2 = unique("vt-fresh");
    made.containers.push(c2.clone());
    let fresh_bind = format!("{fresh}:/d");
    ok(&p.docker_at(
        &host,
        &["create", "--name", &c2, "-v", &fresh_bind, img, "true"],
    ));

    // The same rule as `-v /path:/h`: listing the path grants it.
    trust_update(&p, &id, &format!("allow_bind_mounts=[\"{host_dir}\"]"));
    ok(&p.docker_at(
        &host,
        &[
            "create",
            "--name",
            &c1,
            "-v",
            &bind,
            img,
            "cat",
            "/h/secret.txt",
        ],
    ));
    // (and the volume really is the host directory)
    let out = direct(&["start", "-a", &c1]);
    assert_eq!(ok(&out).trim(), secret);
}

/// `volume.create` options that name host paths (overlay directories, a
/// relative bind device) are binds; a network file system and a plugin
/// driver need `allow_volume_drivers`.
#[test]
#[cfg_attr(
    no_docker,
    ignore = "no Docker daemon answers on DOCKER_HOST or /var/run/docker.sock"
)]
fn volume_options_that_name_host_paths_or_remote_mounts_need_rights() {
    engine();
    let mut made = Made::default();
    let (p, host, _sock) = pinned_proxy("volmaker", &[]);
    let id = trust_create(
        &p,
        &[
            "caller_service=volmaker",
            "target_container=vm-*",
            r#"resources={"volumes": {"read": true, "write": true}}"#,
        ],
    );
    let dir = tempfile::tempdir().unwrap();
    let lower = dir.path().join("lower");
    let upper = dir.path().join("upper");
    let work = dir.path().join("work");
    for d in [&lower, &upper, &work] {
        std::fs::create_dir(d).unwrap();
    }
    let overlay = format!(
        "o=lowerdir={},upperdir={},workdir={}",
        lower.display(),
        upper.display(),
        work.display()
    );
    let vol = unique("pc-made");
    made.volumes.push(vol.clone());
    let create = |opts: &[&str]| {
        let mut args = vec!["volume", "create"];
        args.extend_from_slice(opts);
        args.push(&vol);
        p.docker_at(&host, &args)
    };
    refused(
        &create(&["-o", "type=overlay", "-o", "device=overlay", "-o", &overlay]),
        &format!("bind-mounting host path {} is not allowed", lower.display()),
    );
    // A relative device depends on the daemon's working directory: the whole host.
    refused(
        &create(&["-o", "type=none", "-o", "o=bind", "-o", "device=etc"]),
        "bind-mounting host path / is not allowed",
    );
    let nfs = [
        "-o",
        "type=nfs",
        "-o",
        "o=addr=127.0.0.1",
        "-o",
        "device=:/export",
    ];
    refused(&create(&nfs), "volume driver local:nfs is not allowed");
    refused(
        &create(&["-d", "pc-no-such-plugin"]),
        "volume driver pc-no-such-plugin is not allowed",
    );

    // Opted in: the network mount may be made (the daemon mounts it only on use).
    trust_update(&p, &id, r#"allow_volume_drivers=["local:nfs"]"#);
    ok(&create(&nfs));
    assert_eq!(volume_label(&vol, "portcullis.creator"), "volmaker");
}

/// An existing volume holds someone's data: a caller mounts only the volumes
/// it created through portcullis or its trust lists; anonymous volumes and
/// new names are fine.
#[test]
#[cfg_attr(
    no_docker,
    ignore = "no Docker daemon answers on DOCKER_HOST or /var/run/docker.sock"
)]
fn existing_volumes_are_mountable_by_their_creator_or_by_grant() {
    engine();
    let img = image();
    let mut made = Made::default();
    let (p, host, _sock) = pinned_proxy("voluser", &[]);
    let images = format!("allowed_images=[\"{img}\"]");
    let id = trust_create(
        &p,
        &[
            "caller_service=voluser",
            "target_container=vu-*",
            "can_create=true",
            &images,
            r#"resources={"volumes": {"read": true, "write": true}}"#,
        ],
    );
    let theirs = unique("pc-theirs");
    made.volumes.push(theirs.clone());
    ok(&direct(&["volume", "create", &theirs]));
    let c = unique("vu-c");
    made.containers.push(c.clone());
    let theirs_bind = format!("{theirs}:/d");
    refused(
        &p.docker_at(
            &host,
            &["create", "--name", &c, "-v", &theirs_bind, img, "true"],
        ),
        &format!("mounting existing volume {theirs} is not allowed for caller voluser"),
    );

    // "Creating" an existing volume returns it unchanged: no ownership is gained.
    ok(&p.docker_at(&host, &["volume", "create", &theirs]));
    assert_eq!(volume_label(&theirs, "portcullis.creator"), "");
    refused(
        &p.docker_at(
            &host,
            &["create", "--name", &c, "-v", &theirs_bind, img, "true"],
        ),
        "mounting existing volume",
    );

    // Its own volume, made through portcullis; a forged creator label is overwritten.
    let mine = unique("pc-mine");
    made.volumes.push(mine.clone());
    ok(&p.docker_at(
        &host,
        &[
            "volume",
            "create",
            "--label",
            "portcullis.creator=someone-else",
            &mine,
        ],
    ));
    assert_eq!(volume_label(&mine, "portcullis.creator"), "voluser");
    let c2 = unique("vu-mine");
    made.containers.push(c2.clone());
    let mine_bind = format!("{mine}:/d");
    ok(&p.docker_at(
        &host,
        &["create", "--name", &c2, "-v", &mine_bind, img, "true"],
    ));

    // A mount cannot label the volume it creates as someone else's: the
    // daemon applies a mount's volume labels when it makes the volume.
    let squatted = unique("pc-squat");
    made.volumes.push(squatted.clone());
    let c4 = unique("vu-squat");
    made.containers.push(c4.clone());
    refused(
        &p.docker_at(
            &host,
            &[
                "create",
                "--name",
                &c4,
                "--mount",
                &format!(
                    "type=volume,src={squatted},dst=/d,volume-label=portcullis.creator=someone-else"
                ),
                img,
                "true",
            ],
        ),
        "only portcullis sets that label",
    );
    assert!(
        !direct(&["volume", "inspect", &squatted]).status.success(),
        "the squatted volume was created"
    );

    // Anonymous volumes are fine.
    let c3 = unique("vu-anon");
    made.containers.push(c3.clone());
    ok(&p.docker_at(&host, &["create", "--name", &c3, "-v", "/d", img, "true"]));

    // Granted by trust.
    trust_update(&p, &id, &format!("volumes=[\"{theirs}\"]"));
    ok(&p.docker_at(
        &host,
        &["create", "--name", &c, "-v", &theirs_bind, img, "true"],
    ));
}
