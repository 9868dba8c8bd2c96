//! Test guest: every attack of the hostile-guest suite, chosen by the last
//! path segment. Each one tries to take more than its limits allow; the host
//! must stop it, commit nothing it staged, and keep serving everyone else.

use std::hint::black_box;
use std::time::{Instant, SystemTime};

use serde_json::{Value, json};
use sluice_sdk::documents::Collection;
use sluice_sdk::{Error, Request, Response, queue};

#[sluice_sdk::handler]
fn handle(req: Request) -> Result<Response, Error> {
    match req.param("attack") {
        Some("loop") => busy_with_host_calls(),
        Some("spin") => spin(),
        Some("clock") => clock(),
        Some("grow") => grow(),
        Some("alloc") => alloc(),
        Some("recurse") => recurse(),
        Some("big-response") => big_response(),
        Some("log-flood") => log_flood(),
        Some("writes") => writes(),
        Some("sends") => sends(),
        Some("panic") => panic_mid_staging(),
        Some("host-trap") => host_trap(),
        Some("escape") => escape(),
        Some("calm") => calm(),
        _ => Err(Error::not_found("no such attack")),
    }
}

/// Stages one write, so a test can see that nothing from an attack committed.
fn stage_marker() -> Result<(), Error> {
    Collection::<Value>::open("loot").put("marker", &json!({"staged": true}))?;
    Ok(())
}

/// Reads forever: every iteration is a host call.
fn busy_with_host_calls() -> Result<Response, Error> {
    stage_marker()?;
    let docs = Collection::<Value>::open("loot");
    let mut n = 0u64;
    loop {
        n += u64::from(docs.get("nothing")?.is_none());
        black_box(n);
    }
}

/// Burns CPU without calling the host: only the epoch stops it.
fn spin() -> Result<Response, Error> {
    stage_marker()?;
    let mut x = 1u64;
    loop {
        x = black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
    }
}

/// Reads both clocks in a tight loop: allowed, and no way out.
fn clock() -> Result<Response, Error> {
    stage_marker()?;
    let start = Instant::now();
    loop {
        black_box(SystemTime::now());
        black_box(start.elapsed());
    }
}

/// Grows memory a megabyte at a time, touching every page, past any cap.
fn grow() -> Result<Response, Error> {
    stage_marker()?;
    let mut chunks = Vec::new();
    loop {
        chunks.push(vec![0xA5u8; 1 << 20]);
        black_box(&chunks);
    }
}

/// One allocation of 1.5 GiB (wasm32 caps a single one below 2 GiB).
fn alloc() -> Result<Response, Error> {
    stage_marker()?;
    let huge = vec![1u8; 3 << 29];
    Ok(Response::text(200, format!("{}", black_box(&huge)[12345])))
}

/// Recurses until the stack runs out. Not a tail call, and the result
/// depends on every frame, so the compiler cannot turn it into a loop.
fn recurse() -> Result<Response, Error> {
    stage_marker()?;
    Ok(Response::text(200, format!("{}", depth(1, black_box(0)))))
}

#[inline(never)]
fn depth(n: u32, stop: u32) -> u32 {
    if n == stop {
        return 0;
    }
    depth(n.wrapping_add(1), stop).rotate_left(n % 7) ^ n
}

/// Answers with 100 MB.
fn big_response() -> Result<Response, Error> {
    stage_marker()?;
    Ok(Response::new(200).with_body(vec![b'x'; 100 * 1024 * 1024]))
}

/// Writes to stdout and stderr without end.
fn log_flood() -> Result<Response, Error> {
    stage_marker()?;
    let line = "flood ".repeat(200);
    loop {
        println!("{line}");
        eprintln!("{line}");
    }
}

/// Stages a million documents, ignoring every refusal.
fn writes() -> Result<Response, Error> {
    let docs = Collection::<Value>::open("loot");
    let mut refused = 0u32;
    for i in 0..1_000_000u32 {
        refused += u32::from(docs.put(format!("k{i}"), &json!(i)).is_err());
    }
    Ok(Response::text(200, format!("{refused} refused")))
}

/// Sends thousands of messages, ignoring every refusal.
fn sends() -> Result<Response, Error> {
    stage_marker()?;
    let mut refused = 0u32;
    for i in 0..5_000u32 {
        refused += u32::from(queue::send("loot", &i).is_err());
    }
    Ok(Response::text(200, format!("{refused} refused")))
}

/// Stages writes and a message, then panics halfway.
fn panic_mid_staging() -> Result<Response, Error> {
    let docs = Collection::<Value>::open("loot");
    for i in 0..100 {
        docs.put(format!("p{i}"), &json!(i))?;
        if i == 50 {
            queue::send("loot", &i)?;
            panic!("halfway through staging");
        }
    }
    Ok(Response::text(200, "unreachable"))
}

/// Calls `documents.get` with a string that points past the end of memory:
/// the host traps while reading the arguments.
fn host_trap() -> Result<Response, Error> {
    stage_marker()?;
    forged::get_out_of_bounds();
    Ok(Response::text(200, "the host read out of bounds"))
}

#[expect(
    unsafe_code,
    reason = "the attack is a forged pointer passed to a host call"
)]
mod forged {
    #[link(wasm_import_module = "sluice:function/documents@0.2.0")]
    unsafe extern "C" {
        /// `documents.get` as lowered: collection, key, return area.
        #[link_name = "get"]
        fn raw_get(
            collection: *const u8,
            collection_len: usize,
            key: *const u8,
            key_len: usize,
            ret: *mut u8,
        );
    }

    /// Passes a collection name of 1 MiB starting 16 bytes below 4 GiB.
    pub fn get_out_of_bounds() {
        let mut ret = [0u8; 64];
        let key = b"k";
        let forged = std::ptr::without_provenance::<u8>(usize::MAX - 16);
        // SAFETY: none intended: the host must refuse the string.
        unsafe { raw_get(forged, 1 << 20, key.as_ptr(), key.len(), ret.as_mut_ptr()) };
    }
}

/// Looks for a way out: environment, arguments, the file system.
fn escape() -> Result<Response, Error> {
    let vars: Vec<String> = std::env::vars().map(|(k, v)| format!("{k}={v}")).collect();
    let args: Vec<String> = std::env::args().collect();
    let root = std::fs::read_dir("/")
        .map(|d| d.count())
        .map_err(|e| e.to_string());
    let here = std::fs::read_dir(".")
        .map(|d| d.count())
        .map_err(|e| e.to_string());
    let passwd = std::fs::read("/etc/passwd")
        .map(|b| b.len())
        .map_err(|e| e.to_string());
    let created = std::fs::write("/tmp/sluice-escape", b"x").map_err(|e| e.to_string());
    let cwd = std::env::current_dir()
        .map(|p| p.display().to_string())
        .map_err(|e| e.to_string());
    Response::json(
        200,
        &json!({
            "vars": vars,
            "args": args,
            "read_dir_root": format!("{root:?}"),
            "read_dir_here": format!("{here:?}"),
            "read_passwd": format!("{passwd:?}"),
            "write_tmp": format!("{created:?}"),
            "current_dir": format!("{cwd:?}"),
        }),
    )
}

/// A well-behaved call of the same component, to show it still works.
fn calm() -> Result<Response, Error> {
    Response::json(200, &json!({"calm": true}))
}
