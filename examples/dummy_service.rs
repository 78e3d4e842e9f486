//! A stand-in service for trying protector out and for its tests, on any OS.
//!
//!     dummy_service sleep SECS              a command that hangs for SECS seconds
//!     dummy_service tree PIDFILE SECS       starts a child that sleeps SECS, writes the
//!                                           child's pid to PIDFILE (and its own to
//!                                           PIDFILE.parent), then sleeps SECS itself
//!                                           (a hung command with a grandchild)
//!     dummy_service service NAME EVENTS     Windows only: runs as the Windows service NAME
//!                                           (register it with `sc create`), appending
//!                                           "start" and "stop" lines to the file EVENTS

use std::time::Duration;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let words: Vec<&str> = args.iter().map(String::as_str).collect();
    match words.as_slice() {
        ["sleep", secs] => std::thread::sleep(secs_arg(secs)),
        ["tree", pidfile, secs] => {
            let mut child = std::process::Command::new(std::env::current_exe().unwrap())
                .args(["sleep", secs])
                .spawn()
                .expect("cannot start the child");
            std::fs::write(format!("{pidfile}.parent"), std::process::id().to_string()).unwrap();
            std::fs::write(pidfile, child.id().to_string()).unwrap();
            std::thread::sleep(secs_arg(secs));
            let _ = child.wait();
        }
        #[cfg(windows)]
        ["service", name, events] => service::run(name, events),
        _ => {
            eprintln!("usage: dummy_service sleep SECS | tree PIDFILE SECS | service NAME EVENTS");
            std::process::exit(2);
        }
    }
}

fn secs_arg(s: &str) -> Duration {
    Duration::from_secs(s.parse().expect("SECS is a whole number"))
}

#[cfg(windows)]
mod service {
    use std::ffi::OsString;
    use std::io::Write;
    use std::sync::{OnceLock, mpsc};
    use std::time::Duration;

    use windows_service::service::{
        ServiceControl, ServiceControlAccept, ServiceExitCode, ServiceState, ServiceStatus,
        ServiceType,
    };
    use windows_service::service_control_handler::{self, ServiceControlHandlerResult};
    use windows_service::{define_windows_service, service_dispatcher};

    static ARGS: OnceLock<(String, String)> = OnceLock::new();

    pub fn run(name: &str, events: &str) {
        ARGS.set((name.to_string(), events.to_string())).unwrap();
        service_dispatcher::start(name, ffi_service_main).expect("run me through the SCM");
    }

    define_windows_service!(ffi_service_main, service_main);

    fn note(events: &str, what: &str) {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(events)
            .unwrap();
        writeln!(f, "{what}").unwrap();
    }

    fn status(state: ServiceState) -> ServiceStatus {
        ServiceStatus {
            service_type: ServiceType::OWN_PROCESS,
            current_state: state,
            controls_accepted: if state == ServiceState::Running {
                ServiceControlAccept::STOP
            } else {
                ServiceControlAccept::empty()
            },
            exit_code: ServiceExitCode::NO_ERROR,
            checkpoint: 0,
            wait_hint: Duration::ZERO,
            process_id: None,
        }
    }

    fn service_main(_args: Vec<OsString>) {
        let (name, events) = ARGS.get().unwrap();
        let (tx, rx) = mpsc::channel();
        let handle = service_control_handler::register(name, move |c| match c {
            ServiceControl::Stop => {
                let _ = tx.send(());
                ServiceControlHandlerResult::NoError
            }
            ServiceControl::Interrogate => ServiceControlHandlerResult::NoError,
            _ => ServiceControlHandlerResult::NotImplemented,
        })
        .unwrap();
        handle
            .set_service_status(status(ServiceState::Running))
            .unwrap();
        note(events, "start");
        let _ = rx.recv();
        note(events, "stop");
        handle
            .set_service_status(status(ServiceState::Stopped))
            .unwrap();
    }
}
