//! These declarations against the C header: struct sizes and field offsets
//! (bindings/conformance/abi_layout.c, compiled here with the system's C
//! compiler), every function declared here present in the header, and the library's
//! version being the one these declarations follow.
use kvcodec_sys::*;
use std::collections::{BTreeMap, BTreeSet};
use std::mem::{size_of, MaybeUninit};
use std::path::PathBuf;
use std::process::Command;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../..")
}

/// Offset of a field, without the `offset_of!` of newer Rust.
macro_rules! offset {
    ($t:ty, $field:ident) => {{
        let value = MaybeUninit::<$t>::uninit();
        let base = value.as_ptr();
        // Only the address is taken; nothing is read.
        let field = unsafe { std::ptr::addr_of!((*base).$field) };
        field as usize - base as usize
    }};
}

macro_rules! layout {
    ($map:ident, $t:ident { $($field:ident),* }) => {
        $map.insert(stringify!($t).to_string(), size_of::<$t>());
        $( $map.insert(format!("{}.{}", stringify!($t), stringify!($field)), offset!($t, $field)); )*
    };
}

#[test]
fn struct_layout_matches_the_header() {
    let mut rust = BTreeMap::new();
    layout!(rust, kvc_diagnostics { message });
    layout!(rust, kvc_tensor { data, dtype, ndim, shape, strides });
    layout!(rust, kvc_tensor_config { struct_size, method, bits, scalar_format, flags, rotation,
        seed, outlier_sixteenths, angle_bins, radius_format, level_bits, min_bits, rope_pairing });
    layout!(rust, kvc_block_info { struct_size, layer, kind, head_dim, head_start, head_count,
        token_start, token_count });
    layout!(rust, kvc_cache_desc { struct_size, num_layers, num_kv_heads, head_dim, num_tokens,
        dtype, rope_layout, position_offset, rope_base });
    layout!(rust, kvc_encode_options { struct_size, threads, block_tokens, queries });
    layout!(rust, kvc_decode_options { struct_size, threads });
    layout!(rust, kvc_stream_info { struct_size, format_major, format_minor, num_layers,
        num_kv_heads, head_dim, num_tokens, dtype, rope_layout, position_offset, rope_base });
    layout!(rust, kvc_buffer { data, size });
    layout!(rust, kvc_attention_options { struct_size, threads, scale, token_begin, token_end,
        flags, runner, runner_opaque });
    layout!(rust, kvc_writer_options { struct_size, threads, block_tokens, zstd_level, appendable,
        reserved, model_name, model_config_hash, sync });
    layout!(rust, kvc_open_options { struct_size, allow_model_mismatch, expect_model_name,
        expect_model_config_hash });
    layout!(rust, kvc_cache_info { struct_size, features, stream, segments, blocks, size,
        ignored_bytes, has_model, reserved, model_config_hash, model_name });
    layout!(rust, kvc_layer_run { struct_size, end, layer, token_start, token_count, segment });
    layout!(rust, kvc_block_entry { struct_size, layer, kind, token_start, token_count, reserved,
        offset, size });

    let compiler = std::env::var("CC").unwrap_or_else(|_| "cc".to_string());
    let program = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("abi_layout");
    let status = Command::new(&compiler)
        .arg("-std=c99")
        .arg("-I")
        .arg(repo().join("capi/include"))
        .arg(repo().join("bindings/conformance/abi_layout.c"))
        .arg("-o")
        .arg(&program)
        .status()
        .unwrap_or_else(|e| panic!("cannot run the C compiler {} ({}); set CC", compiler, e));
    assert!(status.success());
    let output = Command::new(&program).output().unwrap();
    // The structs declared here (the header may have more).
    let mut c = BTreeMap::new();
    for line in String::from_utf8(output.stdout).unwrap().lines() {
        let mut words = line.split_whitespace();
        let name = words.next().unwrap().to_string();
        let value = words.next().unwrap().parse::<usize>().unwrap();
        let struct_name = name.split('.').next().unwrap();
        if rust.contains_key(struct_name) {
            c.insert(name, value);
        }
    }
    assert_eq!(rust, c);
}

/// A subset, not equality: the header may grow ahead of the bindings (a
/// function not declared is no hazard); the structs declared are checked above.
#[test]
fn every_declared_function_is_in_the_header() {
    let header = std::fs::read_to_string(repo().join("capi/include/kvcodec/kvcodec.h")).unwrap();
    let ours = include_str!("../src/lib.rs");
    let names = |text: &str, marker: &str| -> BTreeSet<String> {
        let mut names = BTreeSet::new();
        for piece in text.split(marker).skip(1) {
            // The declaration's name: the last identifier before its '('.
            let before = &piece[..piece.find('(').unwrap()];
            let name = before.rsplit(|c: char| !c.is_alphanumeric() && c != '_').next().unwrap();
            if name.starts_with("kvc_") {
                names.insert(name.to_string()); // not the KVC_API definitions
            }
        }
        names
    };
    let declared = names(&header, "KVC_API ");
    assert!(declared.len() > 20);
    let ours = names(ours, "pub fn ");
    assert!(ours.len() > 20);
    assert!(ours.is_subset(&declared), "{:?}", ours.difference(&declared).collect::<Vec<_>>());
}

#[test]
fn library_is_the_version_declared() {
    let version = unsafe { kvc_version() };
    assert_eq!((version / 1000000, version / 1000 % 1000), (KVC_VERSION_MAJOR, KVC_VERSION_MINOR));
}

#[test]
fn every_status_of_the_header_is_declared() {
    let header = std::fs::read_to_string(repo().join("capi/include/kvcodec/kvcodec.h")).unwrap();
    let start = header.find("typedef enum kvc_status").unwrap();
    let end = start + header[start..].find("} kvc_status;").unwrap();
    let ours = include_str!("../src/lib.rs");
    let mut count = 0;
    for line in header[start..end].lines() {
        let line = line.trim();
        if let Some(name) = line.strip_prefix("KVC_").and_then(|rest| rest.split(' ').next()) {
            let value: String = line.split('=').nth(1).unwrap().trim().chars()
                .take_while(|c| c.is_ascii_digit()).collect();
            let declared = format!("pub const KVC_{}: kvc_status = {};", name, value);
            assert!(ours.contains(&declared), "missing: {}", declared);
            count += 1;
        }
    }
    assert!(count > 10);
}
