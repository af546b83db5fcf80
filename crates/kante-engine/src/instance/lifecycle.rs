//! Start, stop, restart, freeze; watching containers exit; finding them
//! again after a daemon restart; autostart.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use kante_api::instance::{InstanceStatePut, InstanceStatus};
use kante_api::operation::OperationClass;
use kante_api::ConfigMap;
use kante_runtime::process::signal;
use kante_runtime::{Container, ContainerSpec, InitExit, DEFAULT_CAP_DROP};
use kante_store::InstanceRow;
use serde_json::json;
use tokio::sync::watch;

use crate::error::{EngineError, Result};
use crate::instance::proxy::ProxyHandle;
use crate::instance::{config, Running};
use crate::operations::{instance_resources, Op};
use crate::units;
use crate::util::fmt_time;
use crate::util::is_true;
use crate::Engine;

/// Default grace period of a clean shutdown before the kill.
const DEFAULT_STOP_TIMEOUT: i64 = 30;

impl Engine {
    /// `PUT /1.0/instances/{name}/state`.
    pub(crate) async fn instance_state_put(
        &self,
        name: &str,
        req: InstanceStatePut,
    ) -> Result<Arc<Op>> {
        self.instance_row(name).await?;
        let (desc, action) = match req.action.as_str() {
            "start" => ("Starting instance", Action::Start),
            "stop" => (
                "Stopping instance",
                Action::Stop {
                    force: req.force || req.timeout == 0,
                    timeout: req.timeout,
                },
            ),
            "restart" => (
                "Restarting instance",
                Action::Restart {
                    force: req.force,
                    timeout: req.timeout,
                },
            ),
            "freeze" => ("Freezing instance", Action::Freeze),
            "unfreeze" => ("Unfreezing instance", Action::Unfreeze),
            other => return Err(EngineError::bad(format!("Unknown state action {other:?}"))),
        };
        if req.stateful {
            return Err(EngineError::bad(
                "Stateful start/stop needs CRIU, which is not supported",
            ));
        }
        let op = self.ops.create(
            OperationClass::Task,
            desc,
            instance_resources(&[name], false),
        );
        let engine = self.arc();
        let n = name.to_string();
        self.ops.run(
            op.clone(),
            async move { engine.do_action(&n, action).await },
        );
        Ok(op)
    }

    async fn do_action(&self, name: &str, action: Action) -> Result<()> {
        let lock = self.instance_lock(name);
        let _g = lock.lock().await;
        match action {
            Action::Start => {
                if self.instance_status(name) == InstanceStatus::Frozen {
                    return self.freeze(name, false).await;
                }
                self.start_locked(name).await
            }
            Action::Stop { force, timeout } => self.stop_locked(name, force, timeout).await,
            Action::Restart { force, timeout } => {
                self.stop_locked(name, force, timeout).await?;
                self.start_locked(name).await
            }
            Action::Freeze => self.freeze(name, true).await,
            Action::Unfreeze => self.freeze(name, false).await,
        }
    }

    pub(crate) async fn freeze(&self, name: &str, frozen: bool) -> Result<()> {
        let status = self.instance_status(name);
        match (frozen, status) {
            (_, InstanceStatus::Stopped) => {
                return Err(EngineError::bad("The instance isn't running"))
            }
            (true, InstanceStatus::Frozen) => {
                return Err(EngineError::bad("The instance is already frozen"))
            }
            (false, InstanceStatus::Running) => {
                return Err(EngineError::bad("The instance is not frozen"))
            }
            _ => {}
        }
        let r = self
            .running(name)
            .ok_or_else(|| EngineError::bad("The instance isn't running"))?;
        let rt = self.runtime.clone();
        tokio::task::spawn_blocking(move || {
            let guard = crate::lock(&r.container);
            match guard.as_ref() {
                Some(c) => rt.freeze(c, frozen).map_err(EngineError::from),
                None => Err(EngineError::bad("The instance isn't running")),
            }
        })
        .await??;
        let action = if frozen {
            "instance-paused"
        } else {
            "instance-resumed"
        };
        self.events
            .lifecycle(action, &format!("/1.0/instances/{name}"), json!({}));
        Ok(())
    }

    /// Builds the runtime spec from the expanded config, with the id map
    /// (`None`: privileged) and lxcfs directory chosen for this start; the
    /// devices' mounts come from their run plan.
    async fn container_spec(
        &self,
        row: &InstanceRow,
        econfig: &ConfigMap,
        idmap: Option<kante_runtime::IdMap>,
        lxcfs: Option<std::path::PathBuf>,
    ) -> Result<ContainerSpec> {
        let volume = self.instance_volume(row).await?;
        if volume.symlink_metadata().is_err() {
            return Err(EngineError::bad(format!(
                "The instance's storage volume is missing (expected at {}): restore it there, or delete the instance",
                volume.display()
            )));
        }
        let rootfs = self.instance_rootfs(row).await?;
        if !rootfs.join("sbin/init").exists()
            && std::fs::symlink_metadata(rootfs.join("sbin/init")).is_err()
        {
            return Err(EngineError::bad("The instance's rootfs has no /sbin/init"));
        }
        if let Some(list) = econfig.get("linux.kernel_modules") {
            use kante_runtime::kmod;
            let found =
                kmod::ensure(list, &kmod::Host, &kmod::modprobe).map_err(EngineError::bad)?;
            for (line, warn) in found.iter().map(kmod::Outcome::describe) {
                match warn {
                    true => tracing::warn!(instance = %row.name, "{line}"),
                    false => tracing::info!(instance = %row.name, "{line}"),
                }
            }
        }
        let env: Vec<String> = econfig
            .iter()
            .filter_map(|(k, v)| k.strip_prefix("environment.").map(|e| format!("{e}={v}")))
            .collect();
        Ok(ContainerSpec {
            name: row.name.clone(),
            hostname: row.name.clone(),
            rootfs,
            runtime_dir: self.paths.instance_logs(&row.name),
            idmap,
            cgroup: self.paths.instance_cgroup(&row.name),
            init: vec!["/sbin/init".into()],
            env,
            cap_drop: DEFAULT_CAP_DROP.to_vec(),
            mounts: Vec::new(),
            nesting: is_true(econfig.get("security.nesting")),
            intercept: kante_runtime::Intercept {
                mknod: is_true(econfig.get("security.syscalls.intercept.mknod")),
                setxattr: is_true(econfig.get("security.syscalls.intercept.setxattr")),
            },
            console_log_limit: 1 << 20,
            lxcfs,
        })
    }

    pub(crate) async fn start_locked(&self, name: &str) -> Result<()> {
        if self.running(name).is_some() {
            return Err(EngineError::bad("The instance is already running"));
        }
        let mut row = self.instance_row(name).await?;
        let (econfig, edevices) = self.expanded(&row).await?;
        let idmap = self
            .idmap_for_start(name, &econfig, &mut row.config)
            .await?;
        let lxcfs = self.lxcfs_for_start().await;
        let mut spec = self.container_spec(&row, &econfig, idmap, lxcfs).await?;
        let plan = self
            .device_run_plan(&crate::devices::StartCx {
                engine: self,
                devices: &edevices,
                config: &row.config,
                privileged: is_true(econfig.get("security.privileged")),
            })
            .await?;
        spec.mounts = plan.mounts.into_iter().map(|(_, m)| m).collect();
        // The guest API's socket, bound now so its directory can be mounted.
        let devlxd = match crate::devlxd::enabled(&econfig) {
            true => Some(self.devlxd_bind(name)?),
            false => None,
        };
        if let Some(b) = &devlxd {
            spec.mounts.push(b.mount(spec.idmap.is_some()));
        }
        let idmap_current = spec
            .idmap
            .as_ref()
            .map_or_else(|| "[]".into(), super::idmaps::idmap_json);
        // Image templates (create/copy once, `start` ones every time); a
        // failed start keeps the trigger, so the next start renders them.
        self.apply_templates(&row, &econfig, &edevices).await?;
        row.config.remove("volatile.apply_template");
        let mut requests = plan.nics;
        self.overlay_nic_holds(name, &mut requests, true).await?;
        let nics = self.plan_nic_requests(name, &requests)?;
        let rt = self.runtime.clone();
        // NICs are made while init waits for "go", so it boots with them.
        let (engine, plans) = (self.arc(), nics.clone());
        let handle = tokio::runtime::Handle::current();
        let container = tokio::task::spawn_blocking(move || {
            let mut applied = Vec::new();
            let c = rt.start(&spec, &mut |pid| {
                // The NIC error stays the start failure's source.
                applied = handle.block_on(engine.apply_nics(&plans, pid))?;
                Ok(())
            })?;
            Ok::<_, EngineError>((c, applied))
        })
        .await?;
        let (container, applied) = container?;
        super::nics::record_applied(&mut row.config, &applied);
        if let Err(e) = self.apply_limits(&container, &econfig) {
            self.remove_nics(name, &nics, false).await;
            let _ = self.runtime.signal(&container, signal::KILL);
            let rt = self.runtime.clone();
            let _ = tokio::task::spawn_blocking(move || {
                wait_readable_blocking(&container);
                rt.cleanup(container)
            })
            .await;
            return Err(e);
        }
        let proxies = match self
            .open_proxies(name, container.pid(), &row.config, &plan.proxies)
            .await
        {
            Ok(p) => p,
            Err(e) => {
                self.remove_nics(name, &nics, false).await;
                let _ = self.runtime.signal(&container, signal::KILL);
                let rt = self.runtime.clone();
                let _ = tokio::task::spawn_blocking(move || {
                    wait_readable_blocking(&container);
                    rt.cleanup(container)
                })
                .await;
                return Err(e);
            }
        };
        let devlxd = devlxd.map(|b| b.serve(self, name, devlxd_owner(&container)));
        row.config
            .insert("volatile.last_state.power".into(), "RUNNING".into());
        row.config
            .insert("volatile.idmap.current".into(), idmap_current);
        row.last_used_at = fmt_time(kante_api::now());
        self.node.instance_update(&row).await?;
        self.track(name, container, proxies, nics, devlxd);
        self.events.lifecycle(
            "instance-started",
            &format!("/1.0/instances/{name}"),
            json!({}),
        );
        Ok(())
    }

    /// Registers a running container and watches for its exit.
    fn track(
        &self,
        name: &str,
        container: Container,
        proxies: HashMap<String, ProxyHandle>,
        nics: Vec<kante_network::NicPlan>,
        devlxd: Option<crate::devlxd::DevlxdHandle>,
    ) {
        let pid = container.pid();
        let running = Arc::new(Running {
            container: std::sync::Mutex::new(Some(container)),
            pid,
            stopping: std::sync::atomic::AtomicBool::new(false),
            exited: watch::channel(false).0,
            proxies: std::sync::Mutex::new(proxies),
            nics: std::sync::Mutex::new(nics),
            files: std::sync::Mutex::new(None),
            devlxd: std::sync::Mutex::new(devlxd),
        });
        crate::lock(&self.running).insert(name.to_string(), running.clone());
        let engine = self.arc();
        let name = name.to_string();
        tokio::spawn(async move { engine.watch_exit(name, running).await });
    }

    async fn watch_exit(self: Arc<Self>, name: String, running: Arc<Running>) {
        let fd = {
            let guard = crate::lock(&running.container);
            // try_clone: F_DUPFD_CLOEXEC, so no child of the daemon inherits it.
            guard.as_ref().and_then(|c| c.init_pidfd.try_clone().ok())
        };
        if let Some(fd) = fd {
            if let Ok(afd) = crate::util::async_fd(fd) {
                let _ = afd.readable().await;
            }
        }
        let container = crate::lock(&running.container).take();
        let proxies = std::mem::take(&mut *crate::lock(&running.proxies));
        super::live::close_all(proxies).await;
        drop(crate::lock(&running.devlxd).take());
        self.devlxd_clear(&name);
        drop(crate::lock(&running.files).take());
        let exit = match container {
            Some(c) => {
                let rt = self.runtime.clone();
                match tokio::task::spawn_blocking(move || rt.cleanup(c)).await {
                    Ok(Ok(exit)) => exit,
                    Ok(Err(e)) => {
                        tracing::warn!(instance = %name, "cleanup after exit: {e}");
                        None
                    }
                    Err(e) => {
                        tracing::warn!(instance = %name, "cleanup task: {e}");
                        None
                    }
                }
            }
            None => None,
        };
        let nics = std::mem::take(&mut *super::lock_nics(&running));
        self.remove_nics(&name, &nics, false).await;
        crate::lock(&self.running).remove(&name);
        let requested = running.stopping.load(Ordering::SeqCst);
        tracing::info!(instance = %name, ?exit, requested, "instance stopped");
        let rebooting = !requested && exit.map(InitExit::is_reboot).unwrap_or(false);
        if let Ok(mut row) = self.instance_row(&name).await {
            if !rebooting {
                // Stopped for the host's shutdown: started again at boot.
                if !self.host_stopping.load(Ordering::SeqCst) {
                    row.config
                        .insert("volatile.last_state.power".into(), "STOPPED".into());
                }
                row.config.remove("volatile.idmap.current");
                for p in &nics {
                    row.config
                        .remove(&format!("volatile.{}.host_name", p.device));
                }
                let _ = self.node.instance_update(&row).await;
            }
            self.events.lifecycle(
                "instance-stopped",
                &format!("/1.0/instances/{name}"),
                json!({}),
            );
            let _ = running.exited.send_replace(true);
            if rebooting {
                // The guest ran `reboot`: start it again, as LXD does.
                let lock = self.instance_lock(&name);
                let _g = lock.lock().await;
                if let Err(e) = self.start_locked(&name).await {
                    tracing::warn!(instance = %name, "restart after reboot failed: {e}");
                }
                return;
            }
            if row.ephemeral && !requested {
                self.remove_nics(&name, &nics, true).await;
                if let Err(e) = self.remove_instance(&row).await {
                    tracing::warn!(instance = %name, "deleting the ephemeral instance: {e}");
                }
            }
        } else {
            let _ = running.exited.send_replace(true);
        }
    }

    pub(crate) async fn stop_locked(&self, name: &str, force: bool, timeout: i64) -> Result<()> {
        let running = self
            .running(name)
            .ok_or_else(|| EngineError::bad("The instance is already stopped"))?;
        let row = self.instance_row(name).await?;
        running.stopping.store(true, Ordering::SeqCst);
        let mut exited = running.exited.subscribe();
        let sig = if force {
            signal::KILL
        } else {
            self.stop_signal(&row).await
        };
        {
            let guard = crate::lock(&running.container);
            if let Some(c) = guard.as_ref() {
                if self.runtime.is_frozen(c) {
                    // A frozen init cannot react to a signal.
                    let _ = self.runtime.freeze(c, false);
                }
                self.runtime.signal(c, sig)?;
            }
        }
        let (econfig, _) = self.expanded(&row).await?;
        let grace = match timeout {
            t if t > 0 => t,
            _ => econfig
                .get("boot.host_shutdown_timeout")
                .and_then(|v| v.parse().ok())
                .unwrap_or(DEFAULT_STOP_TIMEOUT),
        };
        let done = tokio::time::timeout(
            Duration::from_secs(grace as u64),
            crate::util::wait_true(&mut exited),
        )
        .await;
        if done.is_err() {
            if timeout > 0 {
                tracing::info!(instance = %name, "clean shutdown timed out after {grace}s; killing");
            }
            {
                let guard = crate::lock(&running.container);
                if let Some(c) = guard.as_ref() {
                    self.runtime.signal(c, signal::KILL)?;
                }
            }
            let _ =
                tokio::time::timeout(Duration::from_secs(30), crate::util::wait_true(&mut exited))
                    .await;
        }
        if self.running(name).is_some() {
            return Err(EngineError::internal("The instance did not stop"));
        }
        Ok(())
    }

    /// SIGRTMIN+3 makes systemd halt; other inits get SIGPWR unless the image
    /// names its own signal (`image.kante.stop_signal`, e.g. for busybox).
    async fn stop_signal(&self, row: &InstanceRow) -> i32 {
        if let Some(sig) = row
            .config
            .get("image.kante.stop_signal")
            .and_then(|s| signal_number(s))
        {
            return sig;
        }
        let init = self
            .instance_rootfs(row)
            .await
            .map(|r| r.join("sbin/init"))
            .ok();
        let target = init
            .and_then(|p| std::fs::read_link(&p).ok())
            .map(|t| t.to_string_lossy().into_owned())
            .unwrap_or_default();
        if target.contains("systemd") {
            signal::rtmin_plus(3)
        } else {
            signal::PWR
        }
    }

    /// Applies `limits.*` to a running container's cgroup.
    pub(crate) fn apply_limits(&self, c: &Container, econfig: &ConfigMap) -> Result<()> {
        let cg = self.runtime.cgroup(c);
        // A controller the host does not offer (a nested host's cgroup2
        // may carry none) is left alone unless a key asks for its limit.
        let offered = |ctrl: &str, keys: &[&str]| -> Result<bool> {
            if cg.offers(ctrl) {
                return Ok(true);
            }
            match keys.iter().find(|k| econfig.contains_key(**k)) {
                Some(k) => Err(EngineError::bad(format!(
                    "{k} needs the cgroup {ctrl} controller, which this host does not offer"
                ))),
                None => Ok(false),
            }
        };
        let set = |ctrl: &str, v1: &str, v2: &str, value: String| -> Result<()> {
            let file = if cg.is_v1(ctrl) { v1 } else { v2 };
            cg.write(ctrl, file, &value)
                .map_err(|e| EngineError::bad(format!("Applying {file}: {e}")))
        };
        // Memory: unset means unlimited.
        let mem = match econfig.get("limits.memory") {
            Some(v) => Some(
                units::parse_memory_limit(v, config::host_memory()).map_err(EngineError::bad)?,
            ),
            None => None,
        };
        let swap = econfig
            .get("limits.memory.swap")
            .is_none_or(|v| is_true(Some(v)));
        let limited = !offered("memory", &["limits.memory", "limits.memory.swap"])?
            || cg
                .set_memory(mem, swap)
                .map_err(|e| EngineError::bad(format!("Applying limits.memory: {e}")))?;
        if !limited {
            tracing::warn!(cgroup = %cg.rel(), "limits.memory.swap=false: the host kernel does not account swap (no memsw/swap.max); swap is not limited");
        }
        // CPU pinning: a count picks the least-used CPUs; a set is taken as is.
        let cpus = match econfig.get("limits.cpu") {
            Some(v) => match units::parse_cpu_limit(v).map_err(EngineError::bad)? {
                units::CpuLimit::Set(s) => s,
                units::CpuLimit::Count(n) => self.balanced_cpus(n as usize, &c.record.cgroup),
            },
            None => (0..config::online_cpus() as u32).collect(),
        };
        let list = cpus
            .iter()
            .map(|c| c.to_string())
            .collect::<Vec<_>>()
            .join(",");
        if offered("cpuset", &["limits.cpu"])? {
            set("cpuset", "cpuset.cpus", "cpuset.cpus", list)?;
        }
        // CPU allowance: a percentage is a relative share, a time slice a hard quota.
        let (shares, quota, period) = match econfig.get("limits.cpu.allowance") {
            Some(v) => match units::parse_cpu_allowance(v).map_err(EngineError::bad)? {
                units::CpuAllowance::Percent(p) => {
                    (((p / 100.0) * 1024.0) as u64, -1i64, 100_000u64)
                }
                units::CpuAllowance::Quota {
                    quota_us,
                    period_us,
                } => (1024, quota_us as i64, period_us),
            },
            None => (1024, -1, 100_000),
        };
        if !offered("cpu", &["limits.cpu.allowance"])? {
            // Not offered: nothing to write.
        } else if cg.is_v1("cpu") {
            set("cpu", "cpu.shares", "", shares.max(2).to_string())?;
            set("cpu", "cpu.cfs_period_us", "", period.to_string())?;
            set("cpu", "cpu.cfs_quota_us", "", quota.to_string())?;
        } else {
            set(
                "cpu",
                "",
                "cpu.weight",
                ((shares.max(2) * 100) / 1024).clamp(1, 10000).to_string(),
            )?;
            let q = if quota < 0 {
                "max".to_string()
            } else {
                quota.to_string()
            };
            set("cpu", "", "cpu.max", format!("{q} {period}"))?;
        }
        let procs = econfig
            .get("limits.processes")
            .cloned()
            .unwrap_or_else(|| "max".into());
        if offered("pids", &["limits.processes"])? {
            set("pids", "pids.max", "pids.max", procs)?;
        }
        Ok(())
    }

    /// The `n` CPUs pinned by the fewest other running instances.
    fn balanced_cpus(&self, n: usize, own_cgroup: &str) -> Vec<u32> {
        let total = config::online_cpus();
        let mut load = vec![0usize; total];
        // By cgroup path, not through the containers' locks: the caller may
        // hold its own (a live update), and two updates must not wait on
        // each other.
        let names: Vec<String> = crate::lock(&self.running).keys().cloned().collect();
        for name in names {
            let rel = self.paths.instance_cgroup(&name);
            if rel == own_cgroup {
                continue;
            }
            if let Some(cpus) = self.runtime.cgroup_at(&rel).read("cpuset", "cpuset.cpus") {
                if let Ok(set) = units::parse_cpu_set(&cpus) {
                    if set.len() < total {
                        for cpu in set {
                            if let Some(l) = load.get_mut(cpu as usize) {
                                *l += 1;
                            }
                        }
                    }
                }
            }
        }
        let mut order: Vec<usize> = (0..total).collect();
        order.sort_by_key(|&i| (load[i], i));
        let mut pick: Vec<u32> = order
            .into_iter()
            .take(n.min(total))
            .map(|i| i as u32)
            .collect();
        pick.sort_unstable();
        pick
    }

    /// After a daemon restart: attach to containers that kept running and
    /// start `boot.autostart` ones (and those that were running at a host
    /// shutdown, when boot.autostart is unset, as LXD does).
    pub(crate) async fn reattach_instances(&self) {
        let rows = match self.node.instance_list().await {
            Ok(r) => r,
            Err(e) => {
                tracing::error!("listing instances: {e}");
                return;
            }
        };
        let mut to_start = Vec::new();
        for row in rows {
            let dir = self.paths.instance_logs(&row.name);
            let rt = self.runtime.clone();
            let attached = tokio::task::spawn_blocking(move || rt.attach(&dir))
                .await
                .ok()
                .flatten();
            match attached {
                Some(c) => {
                    tracing::info!(instance = %row.name, pid = c.pid(), "re-attached to running instance");
                    let devices = self
                        .expanded(&row)
                        .await
                        .map(|(_, d)| d)
                        .unwrap_or_default();
                    let proxies = match self
                        .restore_proxies(&row.name, c.pid(), &devices, &row.config)
                        .await
                    {
                        Ok(p) => p,
                        Err(e) => {
                            tracing::warn!(instance = %row.name, "restoring proxy devices: {e}");
                            HashMap::new()
                        }
                    };
                    let nics = self.stored_nic_plans(&row).await;
                    let devlxd = self.devlxd_rebind(&row, &c).await;
                    self.track(&row.name, c, proxies, nics, devlxd);
                }
                None => {
                    self.cleanup_stale(&row);
                    let econfig = self
                        .expanded(&row)
                        .await
                        .map(|(c, _)| c)
                        .unwrap_or_default();
                    let autostart = match econfig.get("boot.autostart") {
                        Some(v) => is_true(Some(v)),
                        None => row
                            .config
                            .get("volatile.last_state.power")
                            .map(|s| s == "RUNNING")
                            .unwrap_or(false),
                    };
                    if autostart {
                        let prio: i64 = econfig
                            .get("boot.autostart.priority")
                            .and_then(|v| v.parse().ok())
                            .unwrap_or(0);
                        let delay: u64 = econfig
                            .get("boot.autostart.delay")
                            .and_then(|v| v.parse().ok())
                            .unwrap_or(0);
                        to_start.push((prio, delay, row.name.clone()));
                    }
                }
            }
        }
        // Before anything starts again: forwards of instances that stopped
        // while the daemon was away go.
        self.reconcile_forwards().await;
        // Higher priority first, as LXD orders boot.autostart.priority.
        to_start.sort_by(|a, b| b.0.cmp(&a.0).then(a.2.cmp(&b.2)));
        if to_start.is_empty() {
            return;
        }
        let engine = self.arc();
        tokio::spawn(async move {
            for (_, delay, name) in to_start {
                let lock = engine.instance_lock(&name);
                let r = {
                    let _g = lock.lock().await;
                    engine.start_locked(&name).await
                };
                match r {
                    Ok(()) => tracing::info!(instance = %name, "autostarted"),
                    Err(e) => tracing::warn!(instance = %name, "autostart failed: {e}"),
                }
                if delay > 0 {
                    tokio::time::sleep(Duration::from_secs(delay)).await;
                }
            }
        });
    }

    /// After a daemon restart: a fresh guest socket in the directory the
    /// running container already has mounted at `/dev/lxd`.
    async fn devlxd_rebind(
        &self,
        row: &InstanceRow,
        c: &Container,
    ) -> Option<crate::devlxd::DevlxdHandle> {
        // The directory is there if the instance was started with it (the
        // config may have changed since; it applies at the next start).
        if !self.devlxd_dir(&row.name).is_dir() {
            return None;
        }
        match self.devlxd_bind(&row.name) {
            Ok(b) => Some(b.serve(self, &row.name, devlxd_owner(c))),
            Err(e) => {
                tracing::warn!(instance = %row.name, "guest API socket: {e}");
                None
            }
        }
    }

    /// Removes what a container that died while the daemon was away left behind.
    fn cleanup_stale(&self, row: &InstanceRow) {
        self.devlxd_clear(&row.name);
        let dir = self.paths.instance_logs(&row.name);
        if let Some(rec) = kante_runtime::ContainerRecord::load(&dir) {
            let cg = self.runtime.cgroup_at(&rec.cgroup);
            if let Err(e) = cg.remove() {
                tracing::warn!(instance = %row.name, "removing stale cgroup: {e}");
            }
            let _ = std::fs::remove_file(kante_runtime::ContainerRecord::path(&dir));
        }
    }
}

/// The processes a guest socket answers: the container's.
fn devlxd_owner(c: &Container) -> crate::devlxd::Owner {
    crate::devlxd::Owner {
        init_pid: c.pid(),
        cgroup: c.record.cgroup.clone(),
    }
}

enum Action {
    Start,
    Stop { force: bool, timeout: i64 },
    Restart { force: bool, timeout: i64 },
    Freeze,
    Unfreeze,
}

fn signal_number(name: &str) -> Option<i32> {
    Some(match name.trim().trim_start_matches("SIG") {
        "PWR" => signal::PWR,
        "TERM" => signal::TERM,
        "INT" => signal::INT,
        "USR1" => signal::USR1,
        "USR2" => signal::USR2,
        "HUP" => signal::HUP,
        "KILL" => signal::KILL,
        "RTMIN+3" => signal::rtmin_plus(3),
        "RTMIN+4" => signal::rtmin_plus(4),
        other => other.parse().ok()?,
    })
}

fn wait_readable_blocking(c: &Container) {
    c.wait_init_exit(Duration::from_secs(10));
}
