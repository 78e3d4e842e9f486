//! protector as a Windows service: `protector service install|uninstall`, and the service
//! entry point the Service Control Manager starts (`protector service run`, hidden).
//!
//! A service has no console, so it logs to a file (by default `protector.log` next to the
//! config, rotated daily). A stop or shutdown request from the SCM is delivered to the loop
//! exactly like SIGTERM on Unix: no new command, wait for the running ones, exit.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::Subcommand;
use windows_service::service::{
    ServiceAccess, ServiceAction, ServiceActionType, ServiceControl, ServiceControlAccept,
    ServiceErrorControl, ServiceExitCode, ServiceFailureActions, ServiceFailureResetPeriod,
    ServiceInfo, ServiceStartType, ServiceState, ServiceStatus, ServiceType,
};
use windows_service::service_control_handler::{self, ServiceControlHandlerResult};
use windows_service::service_manager::{ServiceManager, ServiceManagerAccess};
use windows_service::{define_windows_service, service_dispatcher};

use crate::config::{self, Os};
use crate::daemon;
use crate::logging::{self, LogFormat, LogOptions};
use crate::platform::{OnSignal, Signal};

const DEFAULT_NAME: &str = "protector";

#[derive(Debug, Subcommand)]
pub enum Action {
    /// Register protector as a Windows service that starts automatically with Windows.
    Install {
        /// Config file (YAML); validated before the service is registered.
        #[arg(short, long, value_name = "FILE")]
        config: PathBuf,
        /// Service name.
        #[arg(long, default_value = DEFAULT_NAME)]
        name: String,
        /// Log file (rotated daily). Default: protector.log next to the config.
        #[arg(long, value_name = "PATH")]
        log_file: Option<PathBuf>,
    },
    /// Stop the service if it runs, and remove it.
    Uninstall {
        /// Service name.
        #[arg(long, default_value = DEFAULT_NAME)]
        name: String,
    },
    /// Run as the service (what the Service Control Manager starts).
    #[command(hide = true)]
    Run {
        #[arg(short, long, value_name = "FILE")]
        config: PathBuf,
        #[arg(long, default_value = DEFAULT_NAME)]
        name: String,
        #[arg(long, value_name = "PATH")]
        log_file: Option<PathBuf>,
    },
}

/// What an action says: on stdout, and its warnings on stderr (`cli` prints them).
#[derive(Default)]
pub struct Said {
    pub out: String,
    pub warnings: String,
}

pub fn main(action: Action, format: LogFormat, verbosity: i8) -> Result<Said> {
    match action {
        Action::Install {
            config,
            name,
            log_file,
        } => install(&config, &name, log_file.as_deref()),
        Action::Uninstall { name } => uninstall(&name),
        Action::Run {
            config,
            name,
            log_file,
        } => run(config, name, log_file, format, verbosity).map(|()| Said::default()),
    }
}

fn install(config: &Path, name: &str, log_file: Option<&Path>) -> Result<Said> {
    if let Err(e) = config::load(config, Os::host()) {
        anyhow::bail!("not installing: the config is invalid\n{e}");
    }
    let config = std::path::absolute(config)?;
    let mut args: Vec<OsString> = vec![
        "service".into(),
        "run".into(),
        "--config".into(),
        config.clone().into(),
        "--name".into(),
        name.into(),
    ];
    if let Some(log) = log_file {
        args.push("--log-file".into());
        args.push(std::path::absolute(log)?.into());
    }
    let manager = ServiceManager::local_computer(
        None::<&str>,
        ServiceManagerAccess::CONNECT | ServiceManagerAccess::CREATE_SERVICE,
    )
    .context("cannot connect to the Service Control Manager")?;
    let info = ServiceInfo {
        name: name.into(),
        display_name: format!("protector ({name})").into(),
        service_type: ServiceType::OWN_PROCESS,
        start_type: ServiceStartType::AutoStart,
        error_control: ServiceErrorControl::Normal,
        executable_path: std::env::current_exe()?,
        launch_arguments: args,
        dependencies: vec![],
        account_name: None,
        account_password: None,
    };
    // START: restart actions need it on the handle that sets them.
    let service = manager
        .create_service(&info, ServiceAccess::CHANGE_CONFIG | ServiceAccess::START)
        .with_context(|| format!("cannot create service {name}"))?;
    let _ = service.set_description("Restarts services whose heartbeat file has gone stale.");
    // A protector that crashes is started again by the SCM: after 5 s, 10 s, then every 60 s;
    // the count starts over after a day without a crash.
    let restart = |secs| ServiceAction {
        action_type: ServiceActionType::Restart,
        delay: Duration::from_secs(secs),
    };
    service
        .update_failure_actions(ServiceFailureActions {
            reset_period: ServiceFailureResetPeriod::After(Duration::from_secs(86_400)),
            reboot_msg: None,
            command: None,
            actions: Some(vec![restart(5), restart(10), restart(60)]),
        })
        .with_context(|| format!("cannot set service {name} to restart after a crash"))?;
    let mut said = Said::default();
    if let Err(e) = crate::platform::register_source(name) {
        said.warnings = format!(
            "protector: warning: cannot register {name} as an Event Log source ({e}); Event \
             Viewer will show its records with a note that their description is missing\n"
        );
    }
    said.out = format!(
        "installed service {name} (config {}); start it with: net start {name}\n",
        config.display()
    );
    Ok(said)
}

fn uninstall(name: &str) -> Result<Said> {
    let manager = ServiceManager::local_computer(None::<&str>, ServiceManagerAccess::CONNECT)
        .context("cannot connect to the Service Control Manager")?;
    let service = manager
        .open_service(
            name,
            ServiceAccess::QUERY_STATUS | ServiceAccess::STOP | ServiceAccess::DELETE,
        )
        .with_context(|| format!("cannot open service {name}"))?;
    if service.query_status()?.current_state != ServiceState::Stopped {
        let _ = service.stop();
        let deadline = Instant::now() + Duration::from_secs(120);
        while service.query_status()?.current_state != ServiceState::Stopped {
            anyhow::ensure!(Instant::now() < deadline, "service {name} did not stop");
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    service
        .delete()
        .with_context(|| format!("cannot delete service {name}"))?;
    crate::platform::unregister_source(name);
    Ok(Said {
        out: format!("removed service {name}\n"),
        warnings: String::new(),
    })
}

/// What the service entry point needs; set before the dispatcher calls it.
struct Launch {
    config: PathBuf,
    name: String,
    log: LogOptions,
}

static LAUNCH: OnceLock<Launch> = OnceLock::new();

fn run(
    config: PathBuf,
    name: String,
    log_file: Option<PathBuf>,
    format: LogFormat,
    verbosity: i8,
) -> Result<()> {
    let config = std::path::absolute(config)?;
    let log_file = log_file.unwrap_or_else(|| {
        config
            .parent()
            .unwrap_or(Path::new("."))
            .join("protector.log")
    });
    let log = LogOptions {
        verbosity,
        format,
        file: Some(log_file),
        keep: 7,
        stderr: false,
        event_log: Some(name.clone()),
    };
    let _ = LAUNCH.set(Launch {
        config,
        name: name.clone(),
        log,
    });
    service_dispatcher::start(&name, ffi_service_main).context(
        "cannot start as a service (protector service run is for the Service Control Manager)",
    )?;
    Ok(())
}

define_windows_service!(ffi_service_main, service_main);

fn service_main(_args: Vec<OsString>) {
    let launch = LAUNCH.get().expect("set before the dispatcher starts");
    let _ = logging::init(&launch.log);
    if let Err(e) = serve(launch) {
        tracing::error!(event = "fatal", "{e:#}");
    }
}

fn status(state: ServiceState, exit: u32, wait: Duration) -> ServiceStatus {
    ServiceStatus {
        service_type: ServiceType::OWN_PROCESS,
        current_state: state,
        controls_accepted: if state == ServiceState::Running {
            ServiceControlAccept::STOP | ServiceControlAccept::SHUTDOWN
        } else {
            ServiceControlAccept::empty()
        },
        exit_code: if exit == 0 {
            ServiceExitCode::NO_ERROR
        } else {
            ServiceExitCode::ServiceSpecific(exit)
        },
        checkpoint: 0,
        wait_hint: wait,
        process_id: None,
    }
}

fn serve(launch: &Launch) -> Result<()> {
    // Stop requests may come before the loop is ready to hear them: keep one pending.
    let deliver: Arc<Mutex<(Option<OnSignal>, bool)>> = Arc::new(Mutex::new((None, false)));
    let handle_slot: Arc<OnceLock<service_control_handler::ServiceStatusHandle>> =
        Arc::new(OnceLock::new());
    let handler = {
        let deliver = deliver.clone();
        let handle_slot = handle_slot.clone();
        move |control| match control {
            ServiceControl::Stop | ServiceControl::Shutdown => {
                if let Some(h) = handle_slot.get() {
                    let _ = h.set_service_status(status(
                        ServiceState::StopPending,
                        0,
                        Duration::from_secs(120),
                    ));
                }
                let mut d = deliver.lock().unwrap_or_else(|p| p.into_inner());
                match &d.0 {
                    Some(f) => f(Signal::Shutdown),
                    None => d.1 = true,
                }
                ServiceControlHandlerResult::NoError
            }
            ServiceControl::Interrogate => ServiceControlHandlerResult::NoError,
            _ => ServiceControlHandlerResult::NotImplemented,
        }
    };
    let handle = service_control_handler::register(&launch.name, handler)?;
    let _ = handle_slot.set(handle);

    let inbox = daemon::Inbox::listen()?;
    // A refused file with a last accepted copy: the host stays watched on that copy.
    let start = match config::accepted::start_on(&launch.config, Os::host()) {
        Ok(start) => start,
        Err(e) => {
            tracing::error!(event = "fatal", "{e}");
            handle.set_service_status(status(ServiceState::Stopped, 1, Duration::ZERO))?;
            return Ok(());
        }
    };
    handle.set_service_status(status(ServiceState::Running, 0, Duration::ZERO))?;
    tracing::info!(event = "service_started", service = %launch.name, "running as a Windows service");
    let source = {
        let deliver = deliver.clone();
        Box::new(move |f: OnSignal| {
            let mut d = deliver.lock().unwrap_or_else(|p| p.into_inner());
            if d.1 {
                f(Signal::Shutdown);
            }
            d.0 = Some(f);
        }) as Box<dyn FnOnce(OnSignal) + Send>
    };
    let opts = daemon::Options {
        config_path: Some(launch.config.clone()),
        dry_run: false,
        signal_source: Some(source),
        accepted_text: start.text,
        refused: start.refused,
    };
    let exit = match daemon::watch(start.config, &launch.config, opts, inbox) {
        Ok(_) => 0,
        Err(e) => {
            tracing::error!(event = "fatal", "{e:#}");
            1
        }
    };
    handle.set_service_status(status(ServiceState::Stopped, exit, Duration::ZERO))?;
    Ok(())
}
