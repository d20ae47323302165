//! Finds libkvcodec without any crate: KVCODEC_LIB_DIR names its directory,
//! otherwise the `pkg-config` program (or $PKG_CONFIG) is asked for kvcodec.
//! KVCODEC_STATIC=1 links the static library, with pkg-config's --static
//! flags (Highway, the C++ runtime).
use std::env;
use std::process::Command;

fn main() {
    for var in ["KVCODEC_LIB_DIR", "KVCODEC_STATIC", "PKG_CONFIG", "PKG_CONFIG_PATH"] {
        println!("cargo:rerun-if-env-changed={}", var);
    }
    let statik = env::var("KVCODEC_STATIC").map(|v| v == "1").unwrap_or(false);
    if let Ok(dir) = env::var("KVCODEC_LIB_DIR") {
        // Only the shared library: a static one needs its dependencies,
        // which pkg-config knows.
        if statik {
            panic!("kvcodec-sys: KVCODEC_STATIC=1 needs pkg-config (kvcodec.pc lists the \
                    static library's dependencies): unset KVCODEC_LIB_DIR");
        }
        println!("cargo:rustc-link-search=native={}", dir);
        println!("cargo:rustc-link-lib=dylib=kvcodec");
        return;
    }
    let program = env::var("PKG_CONFIG").unwrap_or_else(|_| "pkg-config".to_string());
    let mut command = Command::new(&program);
    command.args(["--libs", "kvcodec"]);
    if statik {
        command.arg("--static");
    }
    let output = match command.output() {
        Ok(output) => output,
        Err(e) => panic!(
            "kvcodec-sys: cannot run {} ({}): set KVCODEC_LIB_DIR to the directory of \
             libkvcodec, or install pkg-config",
            program, e
        ),
    };
    if !output.status.success() {
        panic!(
            "kvcodec-sys: `{} --libs kvcodec` failed: {}Set PKG_CONFIG_PATH to the directory \
             of kvcodec.pc, or KVCODEC_LIB_DIR to the directory of libkvcodec.",
            program,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let flags = String::from_utf8_lossy(&output.stdout).to_string();
    for flag in flags.split_whitespace() {
        if let Some(dir) = flag.strip_prefix("-L") {
            println!("cargo:rustc-link-search=native={}", dir);
        } else if let Some(lib) = flag.strip_prefix("-l") {
            let kind = if statik && lib == "kvcodec" { "static" } else { "dylib" };
            println!("cargo:rustc-link-lib={}={}", kind, lib);
        } else if flag == "-pthread" {
            println!("cargo:rustc-link-lib=dylib=pthread");
        }
    }
}
