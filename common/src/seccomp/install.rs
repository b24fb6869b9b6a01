//! Loading the compiled filter into the calling thread.

use super::Program;

const SECCOMP_SET_MODE_FILTER: libc::c_ulong = 1;
const SECCOMP_MODE_FILTER: libc::c_ulong = 2;

/// Install `prog` for this process: seccomp(2), or prctl(PR_SET_SECCOMP) on a kernel
/// without the seccomp syscall (which takes no flags). Needs no_new_privs or CAP_SYS_ADMIN.
pub fn install(prog: &Program) -> Result<(), String> {
    load(prog).map_err(|(call, err)| {
        format!(
            "linux.seccomp: {call} (flags {:#x}, {} instructions): {err}",
            prog.flags,
            prog.insns.len()
        )
    })
}

/// [`install`] without allocating, for a forked child: the failed call and its error.
pub fn load(prog: &Program) -> Result<(), (&'static str, std::io::Error)> {
    let fprog = libc::sock_fprog {
        len: prog.insns.len() as libc::c_ushort,
        filter: prog.insns.as_ptr() as *mut libc::sock_filter,
    };
    // SAFETY: fprog points at `prog.insns`, which outlives the call; the kernel copies it.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            SECCOMP_SET_MODE_FILTER,
            libc::c_ulong::from(prog.flags),
            &fprog as *const libc::sock_fprog,
        )
    };
    if ret == 0 {
        return Ok(());
    }
    let err = std::io::Error::last_os_error();
    if err.raw_os_error() != Some(libc::ENOSYS) || prog.flags != 0 {
        return Err(("seccomp(SECCOMP_SET_MODE_FILTER)", err));
    }
    // SAFETY: as above.
    let ret = unsafe {
        libc::prctl(
            libc::PR_SET_SECCOMP,
            SECCOMP_MODE_FILTER,
            &fprog as *const libc::sock_fprog,
            0,
            0,
        )
    };
    if ret == 0 {
        return Ok(());
    }
    Err(("prctl(PR_SET_SECCOMP)", std::io::Error::last_os_error()))
}
