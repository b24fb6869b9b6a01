//! process.ioPriority: the I/O scheduling class and level, set with ioprio_set(2).

//! Shared by the container's init and the microVM's agent.

use oci_spec::runtime::{IOPriorityClass, LinuxIOPriority};

const IOPRIO_CLASS_SHIFT: u32 = 13;
const IOPRIO_WHO_PROCESS: libc::c_int = 1;

/// The ioprio value of a class and level (0 highest .. 7 lowest). Errors name the field.
pub fn value(p: &LinuxIOPriority) -> std::result::Result<u32, (String, String)> {
    let class = match p.class() {
        IOPriorityClass::IoprioClassRt => 1,
        IOPriorityClass::IoprioClassBe => 2,
        IOPriorityClass::IoprioClassIdle => 3,
    };
    if !(0..=7).contains(&p.priority()) {
        return Err((
            "process.ioPriority.priority".into(),
            format!("{} is out of range 0-7", p.priority()),
        ));
    }
    Ok((class << IOPRIO_CLASS_SHIFT) | p.priority() as u32)
}

/// Set the calling process's I/O priority (one system call: safe between fork and exec).
pub fn apply(value: u32) -> std::io::Result<()> {
    // SAFETY: ioprio_set with integer arguments on the calling process.
    let rc = unsafe { libc::syscall(libc::SYS_ioprio_set, IOPRIO_WHO_PROCESS, 0, value) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_and_levels_encode_like_the_kernel() {
        let p: LinuxIOPriority =
            serde_json::from_str(r#"{"class":"IOPRIO_CLASS_BE","priority":6}"#).unwrap();
        assert_eq!(value(&p).unwrap(), (2 << 13) | 6);
        let p: LinuxIOPriority =
            serde_json::from_str(r#"{"class":"IOPRIO_CLASS_IDLE","priority":0}"#).unwrap();
        assert_eq!(value(&p).unwrap(), 3 << 13);
        let p: LinuxIOPriority =
            serde_json::from_str(r#"{"class":"IOPRIO_CLASS_RT","priority":8}"#).unwrap();
        assert_eq!(value(&p).unwrap_err().0, "process.ioPriority.priority");
    }
}
