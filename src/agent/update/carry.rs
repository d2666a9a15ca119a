//! What a recreated container carries over from the old one: the create body
//! and the networks to join before it starts.
//!
//! Why pure functions over inspect output: this is where an update can lose
//! something a user relies on (a volume, an alias, a port), so it is decided
//! in one place that unit tests can read field by field, with no daemon.
//!
//! The rule for image defaults is docker-compose's: where the old container's
//! value equals the *old image's* default (Cmd, Entrypoint, WorkingDir, User,
//! Healthcheck, StopSignal, Shell, image Env entries and Labels, exposed
//! ports), it is left out, so that the new image's default applies (a new
//! image's new CMD runs). Everything else the old container was given is
//! given again.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use bollard::models::{
    ContainerConfig, ContainerCreateBody, ContainerInspectResponse, EndpointIpamConfig,
    EndpointSettings, HostConfig, ImageConfig, MountType, NetworkingConfig,
};

/// What the caller asked to keep (`preserveVolumes`, `preserveNetworks`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Carry {
    pub volumes: bool,
    pub networks: bool,
}

/// An env patch: names to set (with values) and names to unset.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EnvChange {
    pub set: BTreeMap<String, String>,
    pub unset: BTreeSet<String>,
}

/// The new container: its create body, and the networks it joins after
/// create and before start (the daemon takes only one at create).
#[derive(Debug, Clone, Default)]
pub struct Plan {
    pub body: ContainerCreateBody,
    pub more_networks: Vec<(String, EndpointSettings)>,
}

/// The old container's value unless it is the old image's default; with no
/// image to compare (it could not be inspected), the value as it is.
fn unless_default<T: PartialEq + Clone>(
    value: &Option<T>,
    default: Option<&Option<T>>,
) -> Option<T> {
    match default {
        Some(d) if d == value => None,
        _ => value.clone(),
    }
}

/// The docker-generated hostname is the id's first 12 characters.
pub fn short_id(id: &str) -> &str {
    id.get(..12).unwrap_or(id)
}

/// The new container's create body on `image`, from the old container.
pub fn plan(
    old: &ContainerInspectResponse,
    old_image: Option<&ImageConfig>,
    image: &str,
    carry: Carry,
    env: Option<&EnvChange>,
) -> Plan {
    let id = old.id.as_deref().unwrap_or_default();
    let cfg = old.config.clone().unwrap_or_default();
    let mut host = old.host_config.clone().unwrap_or_default();
    let mut body = config_body(&cfg, id, old_image, image, carry, env);
    // `--link` names are stored as `/other:/this/alias`, which a create
    // would not read back: not carried (README).
    host.links = None;
    if carry.volumes {
        reuse_anonymous_volumes(old, &cfg, &mut host);
    } else {
        host.binds = None;
        host.volumes_from = None;
        // A tmpfs is configuration, not data.
        host.mounts = host.mounts.map(|m| {
            m.into_iter()
                .filter(|m| m.typ == Some(MountType::TMPFS))
                .collect()
        });
    }
    let (networking, more_networks) = networks(old, id, carry, &mut host);
    body.host_config = Some(host);
    body.networking_config = networking;
    Plan {
        body,
        more_networks,
    }
}

fn config_body(
    cfg: &ContainerConfig,
    id: &str,
    old_image: Option<&ImageConfig>,
    image: &str,
    carry: Carry,
    env: Option<&EnvChange>,
) -> ContainerCreateBody {
    let img = old_image;
    let entrypoint = unless_default(&cfg.entrypoint, img.map(|i| &i.entrypoint));
    // A given entrypoint makes the daemon ignore the image's CMD, so the
    // command that ran with it is carried as it was.
    let cmd = if entrypoint.is_some() {
        cfg.cmd.clone()
    } else {
        unless_default(&cfg.cmd, img.map(|i| &i.cmd))
    };
    let image_env = img.and_then(|i| i.env.clone()).unwrap_or_default();
    let mut vars: Vec<String> = cfg
        .env
        .iter()
        .flatten()
        .filter(|e| !image_env.contains(e))
        .cloned()
        .collect();
    if let Some(change) = env {
        apply_env(&mut vars, &image_env, change);
    }
    let image_labels = img.and_then(|i| i.labels.clone()).unwrap_or_default();
    let labels: HashMap<String, String> = cfg
        .labels
        .iter()
        .flatten()
        .filter(|(k, v)| image_labels.get(*k) != Some(*v))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let image_ports = img
        .and_then(|i| i.exposed_ports.clone())
        .unwrap_or_default();
    let ports: Vec<String> = cfg
        .exposed_ports
        .iter()
        .flatten()
        .filter(|p| !image_ports.contains(p))
        .cloned()
        .collect();
    let hostname = cfg
        .hostname
        .clone()
        .filter(|h| !h.is_empty() && h != short_id(id));
    // Declared volume paths: with volumes kept, each becomes a mount of the
    // old volume (`reuse_anonymous_volumes`); without, those the image did
    // not declare are declared again (fresh, empty).
    let volumes = if carry.volumes {
        None
    } else {
        let image_volumes = img.and_then(|i| i.volumes.clone()).unwrap_or_default();
        let v: Vec<String> = cfg
            .volumes
            .iter()
            .flatten()
            .filter(|v| !image_volumes.contains(v))
            .cloned()
            .collect();
        (!v.is_empty()).then_some(v)
    };
    ContainerCreateBody {
        hostname,
        domainname: cfg.domainname.clone().filter(|d| !d.is_empty()),
        user: unless_default(&cfg.user, img.map(|i| &i.user)),
        attach_stdin: cfg.attach_stdin,
        attach_stdout: cfg.attach_stdout,
        attach_stderr: cfg.attach_stderr,
        exposed_ports: (!ports.is_empty()).then_some(ports),
        tty: cfg.tty,
        open_stdin: cfg.open_stdin,
        stdin_once: cfg.stdin_once,
        env: (!vars.is_empty()).then_some(vars),
        cmd,
        healthcheck: unless_default(&cfg.healthcheck, img.map(|i| &i.healthcheck)),
        image: Some(image.to_string()),
        volumes,
        working_dir: unless_default(&cfg.working_dir, img.map(|i| &i.working_dir)),
        entrypoint,
        network_disabled: cfg.network_disabled,
        labels: (!labels.is_empty()).then_some(labels),
        stop_signal: unless_default(&cfg.stop_signal, img.map(|i| &i.stop_signal)),
        stop_timeout: cfg.stop_timeout,
        shell: unless_default(&cfg.shell, img.map(|i| &i.shell)),
        ..Default::default()
    }
}

/// Set and unset names in `vars` (`NAME=value` entries). A name the image
/// itself sets is unset with a bare `NAME`, which the daemon reads as
/// "remove from the image's environment".
fn apply_env(vars: &mut Vec<String>, image_env: &[String], change: &EnvChange) {
    let name_of = |e: &str| e.split('=').next().unwrap_or_default().to_string();
    vars.retain(|e| {
        let name = name_of(e);
        !change.set.contains_key(&name) && !change.unset.contains(&name)
    });
    for (name, value) in &change.set {
        vars.push(format!("{name}={value}"));
    }
    for name in &change.unset {
        if image_env.iter().any(|e| name_of(e) == *name) {
            vars.push(name.clone());
        }
    }
}

/// The destination of a `-v SRC:DST[:OPTS]` bind.
fn bind_destination(bind: &str) -> Option<&str> {
    bind.split(':').nth(1)
}

/// Anonymous volumes (declared paths with a daemon-named volume) are mounted
/// again by name, so their data survives the recreate.
fn reuse_anonymous_volumes(
    old: &ContainerInspectResponse,
    cfg: &ContainerConfig,
    host: &mut HostConfig,
) {
    let declared = cfg.volumes.clone().unwrap_or_default();
    for mount in old.mounts.iter().flatten() {
        let (Some(name), Some(dest)) = (mount.name.as_deref(), mount.destination.as_deref()) else {
            continue;
        };
        if mount.typ.as_deref() != Some("volume") || !declared.iter().any(|d| d == dest) {
            continue;
        }
        let bound = host
            .binds
            .iter()
            .flatten()
            .any(|b| bind_destination(b) == Some(dest));
        if bound {
            continue;
        }
        // `--mount type=volume,dst=…` without a source: name it now.
        let mut named = false;
        for m in host.mounts.iter_mut().flatten() {
            if m.target.as_deref() == Some(dest) {
                if m.source.as_deref().unwrap_or_default().is_empty() {
                    m.source = Some(name.to_string());
                }
                named = true;
            }
        }
        if !named {
            let ro = if mount.rw == Some(false) { ":ro" } else { "" };
            host.binds
                .get_or_insert_with(Vec::new)
                .push(format!("{name}:{dest}{ro}"));
        }
    }
}

/// The endpoint settings a user gave (aliases, static IPs, driver options),
/// without what the daemon filled in (ids, addresses, the alias it adds: the
/// container's short id).
fn endpoint(es: &EndpointSettings, short: &str) -> EndpointSettings {
    let aliases: Vec<String> = es
        .aliases
        .iter()
        .flatten()
        .filter(|a| a.as_str() != short)
        .cloned()
        .collect();
    let ipam = es.ipam_config.clone().filter(|i| {
        let set = |s: &Option<String>| s.as_deref().is_some_and(|s| !s.is_empty());
        set(&i.ipv4_address)
            || set(&i.ipv6_address)
            || i.link_local_ips.as_ref().is_some_and(|l| !l.is_empty())
    });
    EndpointSettings {
        ipam_config: ipam.map(|i| EndpointIpamConfig {
            ipv4_address: i.ipv4_address.filter(|s| !s.is_empty()),
            ipv6_address: i.ipv6_address.filter(|s| !s.is_empty()),
            link_local_ips: i.link_local_ips.filter(|l| !l.is_empty()),
        }),
        aliases: (!aliases.is_empty()).then_some(aliases),
        driver_opts: es.driver_opts.clone().filter(|d| !d.is_empty()),
        ..Default::default()
    }
}

/// The network to create on (the network mode's own, when it is among the
/// container's networks) and the others to connect before start.
type Networks = (Option<NetworkingConfig>, Vec<(String, EndpointSettings)>);

fn networks(
    old: &ContainerInspectResponse,
    id: &str,
    carry: Carry,
    host: &mut HostConfig,
) -> Networks {
    let mode = host.network_mode.clone().unwrap_or_default();
    // host, none and container:… are modes, not networks one joins.
    if mode == "host" || mode == "none" || mode.starts_with("container:") {
        return (None, Vec::new());
    }
    if !carry.networks {
        host.network_mode = None;
        return (None, Vec::new());
    }
    let joined = old
        .network_settings
        .as_ref()
        .and_then(|n| n.networks.clone())
        .unwrap_or_default();
    let mut names: Vec<&String> = joined.keys().collect();
    names.sort();
    let primary_name = if mode.is_empty() || mode == "default" {
        "bridge"
    } else {
        mode.as_str()
    };
    let primary = names
        .iter()
        .position(|n| n.as_str() == primary_name)
        .or((!names.is_empty()).then_some(0));
    let short = short_id(id);
    let mut first = None;
    let mut more = Vec::new();
    for (i, name) in names.iter().enumerate() {
        let es = endpoint(&joined[*name], short);
        if Some(i) == primary {
            first = Some(((*name).clone(), es));
        } else {
            more.push(((*name).clone(), es));
        }
    }
    let networking = first.map(|(name, es)| NetworkingConfig {
        endpoints_config: Some(HashMap::from([(name, es)])),
    });
    (networking, more)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bollard::models::{HealthConfig, Mount, MountPoint, NetworkSettings};

    const ID: &str = "0123456789abcdef0123456789abcdef";

    fn old() -> ContainerInspectResponse {
        let cfg = ContainerConfig {
            hostname: Some(ID[..12].to_string()),
            env: Some(vec!["PATH=/bin".into(), "MODE=prod".into()]),
            cmd: Some(vec!["sleep".into(), "600".into()]),
            labels: Some(HashMap::from([
                ("v".to_string(), "1".to_string()),
                ("team".to_string(), "a".to_string()),
            ])),
            volumes: Some(vec!["/data".into(), "/cache".into()]),
            user: Some(String::new()),
            working_dir: Some(String::new()),
            ..Default::default()
        };
        let mut user_net = EndpointSettings {
            aliases: Some(vec![ID[..12].to_string(), "web".into()]),
            ipam_config: Some(EndpointIpamConfig {
                ipv4_address: Some("10.9.0.5".into()),
                ..Default::default()
            }),
            network_id: Some("n1".into()),
            ip_address: Some("10.9.0.5".into()),
            mac_address: Some("02:42:0a:09:00:05".into()),
            ..Default::default()
        };
        user_net.gateway = Some("10.9.0.1".into());
        ContainerInspectResponse {
            id: Some(ID.into()),
            name: Some("/web".into()),
            config: Some(cfg),
            host_config: Some(HostConfig {
                binds: Some(vec!["named:/data".into()]),
                network_mode: Some("appnet".into()),
                links: Some(vec!["/db:/web/db".into()]),
                ..Default::default()
            }),
            mounts: Some(vec![
                MountPoint {
                    typ: Some("volume".into()),
                    name: Some("named".into()),
                    destination: Some("/data".into()),
                    rw: Some(true),
                    ..Default::default()
                },
                MountPoint {
                    typ: Some("volume".into()),
                    name: Some("abc123anon".into()),
                    destination: Some("/cache".into()),
                    rw: Some(true),
                    ..Default::default()
                },
            ]),
            network_settings: Some(NetworkSettings {
                networks: Some(HashMap::from([
                    ("appnet".to_string(), user_net),
                    ("other".to_string(), EndpointSettings::default()),
                ])),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn image() -> ImageConfig {
        ImageConfig {
            env: Some(vec!["PATH=/bin".into()]),
            cmd: Some(vec!["sleep".into(), "600".into()]),
            labels: Some(HashMap::from([("v".to_string(), "1".to_string())])),
            volumes: Some(vec!["/cache".into()]),
            user: Some(String::new()),
            working_dir: Some(String::new()),
            ..Default::default()
        }
    }

    const KEEP: Carry = Carry {
        volumes: true,
        networks: true,
    };

    #[test]
    fn image_defaults_are_left_to_the_new_image_and_the_rest_is_carried() {
        let p = plan(&old(), Some(&image()), "app:2", KEEP, None);
        let b = &p.body;
        assert_eq!(b.image.as_deref(), Some("app:2"));
        assert_eq!(
            b.cmd, None,
            "the old image's CMD is the new image's to choose"
        );
        assert_eq!(b.env, Some(vec!["MODE=prod".to_string()]));
        assert_eq!(
            b.labels,
            Some(HashMap::from([("team".to_string(), "a".to_string())]))
        );
        assert_eq!(
            b.hostname, None,
            "an auto-generated hostname is not carried"
        );
        assert_eq!((b.user.clone(), b.working_dir.clone()), (None, None));
        // A given command differs from the image's: carried.
        let mut o = old();
        o.config.as_mut().unwrap().cmd = Some(vec!["sh".into()]);
        o.config.as_mut().unwrap().hostname = Some("chosen".into());
        let p = plan(&o, Some(&image()), "app:2", KEEP, None);
        assert_eq!(p.body.cmd, Some(vec!["sh".to_string()]));
        assert_eq!(p.body.hostname.as_deref(), Some("chosen"));
        // No image to compare: everything as it was.
        let p = plan(&old(), None, "app:2", KEEP, None);
        assert_eq!(p.body.cmd, Some(vec!["sleep".to_string(), "600".into()]));
    }

    #[test]
    fn a_custom_entrypoint_keeps_its_command() {
        let mut o = old();
        o.config.as_mut().unwrap().entrypoint = Some(vec!["/bin/sh".into(), "-c".into()]);
        let p = plan(&o, Some(&image()), "app:2", KEEP, None);
        assert_eq!(
            p.body.entrypoint,
            Some(vec!["/bin/sh".to_string(), "-c".into()])
        );
        assert_eq!(p.body.cmd, Some(vec!["sleep".to_string(), "600".into()]));
        let health = HealthConfig {
            test: Some(vec!["CMD".into(), "true".into()]),
            ..Default::default()
        };
        let mut img = image();
        img.healthcheck = Some(health.clone());
        o.config.as_mut().unwrap().healthcheck = Some(health);
        assert_eq!(plan(&o, Some(&img), "x", KEEP, None).body.healthcheck, None);
    }

    #[test]
    fn volumes_are_reused_by_name_or_dropped() {
        let p = plan(&old(), Some(&image()), "app:2", KEEP, None);
        let host = p.body.host_config.clone().unwrap();
        assert_eq!(
            host.binds,
            Some(vec!["named:/data".to_string(), "abc123anon:/cache".into()])
        );
        assert_eq!(p.body.volumes, None);
        assert_eq!(host.links, None, "--link is not carried");
        // An anonymous `--mount type=volume,dst=/cache` gets its volume's name.
        let mut o = old();
        let h = o.host_config.as_mut().unwrap();
        h.mounts = Some(vec![Mount {
            target: Some("/cache".into()),
            typ: Some(MountType::VOLUME),
            ..Default::default()
        }]);
        let p = plan(&o, Some(&image()), "app:2", KEEP, None);
        let host = p.body.host_config.unwrap();
        assert_eq!(host.binds, Some(vec!["named:/data".to_string()]));
        assert_eq!(
            host.mounts.unwrap()[0].source.as_deref(),
            Some("abc123anon")
        );
        // Not preserved: no binds; a path the image does not declare is
        // declared again (a fresh volume).
        let drop = Carry {
            volumes: false,
            networks: true,
        };
        let p = plan(&old(), Some(&image()), "app:2", drop, None);
        assert_eq!(p.body.host_config.unwrap().binds, None);
        assert_eq!(p.body.volumes, Some(vec!["/data".to_string()]));
    }

    #[test]
    fn networks_keep_aliases_and_static_addresses_only() {
        let p = plan(&old(), Some(&image()), "app:2", KEEP, None);
        let eps = p.body.networking_config.unwrap().endpoints_config.unwrap();
        let first = &eps["appnet"];
        assert_eq!(first.aliases, Some(vec!["web".to_string()]));
        assert_eq!(
            first.ipam_config.as_ref().unwrap().ipv4_address.as_deref(),
            Some("10.9.0.5")
        );
        assert_eq!(
            (first.network_id.clone(), first.mac_address.clone()),
            (None, None)
        );
        assert_eq!(p.more_networks.len(), 1);
        assert_eq!(p.more_networks[0].0, "other");
        let drop = Carry {
            volumes: true,
            networks: false,
        };
        let p = plan(&old(), Some(&image()), "app:2", drop, None);
        assert!(p.body.networking_config.is_none() && p.more_networks.is_empty());
        assert_eq!(p.body.host_config.unwrap().network_mode, None);
        let mut o = old();
        o.host_config.as_mut().unwrap().network_mode = Some("host".into());
        let p = plan(&o, Some(&image()), "app:2", KEEP, None);
        assert!(p.body.networking_config.is_none());
        assert_eq!(
            p.body.host_config.unwrap().network_mode.as_deref(),
            Some("host")
        );
    }

    #[test]
    fn env_changes_set_replace_and_unset() {
        let change = EnvChange {
            set: BTreeMap::from([("MODE".to_string(), "dev".to_string())]),
            unset: BTreeSet::from(["PATH".to_string(), "GONE".to_string()]),
        };
        let mut o = old();
        o.config.as_mut().unwrap().env = Some(vec![
            "PATH=/bin".into(),
            "MODE=prod".into(),
            "GONE=1".into(),
        ]);
        let p = plan(&o, Some(&image()), "sha256:x", KEEP, Some(&change));
        // PATH comes from the image: unset with a bare name.
        assert_eq!(
            p.body.env,
            Some(vec!["MODE=dev".to_string(), "PATH".to_string()])
        );
    }
}
