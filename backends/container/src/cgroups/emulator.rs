//! The semantics of the device cgroup, emulated as runc's cgroups/devices emulator does, so
//! v1 (devices.allow/deny) and v2 (a BPF program) enforce the same thing: the rules apply in
//! order to a cgroup that starts by denying every device; `a` resets the default to allow
//! all or deny all; any other rule adds an exception or takes access from one. What is left
//! is a default plus exceptions, which is what gets written or compiled.

use std::collections::BTreeMap;

pub(crate) const READ: u8 = 1;
pub(crate) const WRITE: u8 = 2;
pub(crate) const MKNOD: u8 = 4;
pub(crate) const RWM: u8 = READ | WRITE | MKNOD;

/// Which devices a rule is about; None is the `*` wildcard. Ordered as runc sorts its
/// output: by major, minor, then type, wildcards first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Meta {
    pub major: Option<u32>,
    pub minor: Option<u32>,
    /// 'b' or 'c'.
    pub typ: char,
}

/// One rule: `typ` 'a' (every device), 'b' or 'c'.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Rule {
    pub allow: bool,
    pub typ: char,
    pub major: Option<u32>,
    pub minor: Option<u32>,
    pub access: u8,
}

pub(crate) fn access_text(access: u8) -> String {
    [(READ, 'r'), (WRITE, 'w'), (MKNOD, 'm')]
        .iter()
        .filter(|(bit, _)| access & bit != 0)
        .map(|(_, c)| *c)
        .collect()
}

pub(crate) fn meta_text(m: &Meta, access: u8) -> String {
    let num = |n: Option<u32>| n.map_or("*".to_string(), |n| n.to_string());
    format!(
        "{} {}:{} {}",
        m.typ,
        num(m.major),
        num(m.minor),
        access_text(access)
    )
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Emulator {
    pub default_allow: bool,
    pub exceptions: BTreeMap<Meta, u8>,
}

impl Emulator {
    /// A cgroup that denies every device: where runc starts, whatever the rules say.
    pub fn deny_all() -> Emulator {
        Emulator {
            default_allow: false,
            exceptions: BTreeMap::new(),
        }
    }

    pub fn apply(&mut self, r: &Rule) -> Result<(), String> {
        if r.typ == 'a' {
            *self = Emulator {
                default_allow: r.allow,
                exceptions: BTreeMap::new(),
            };
            return Ok(());
        }
        let meta = Meta {
            major: r.major,
            minor: r.minor,
            typ: r.typ,
        };
        // An allow rule on a deny-all cgroup adds an exception; on an allow-all one it takes
        // access from a deny exception (and the other way round for deny rules).
        if r.allow != self.default_allow {
            *self.exceptions.entry(meta).or_insert(0) |= r.access;
            Ok(())
        } else {
            self.remove(meta, r.access)
        }
    }

    fn remove(&mut self, meta: Meta, access: u8) -> Result<(), String> {
        // The kernel only takes access from an exception of exactly this type and numbers: a
        // wildcard exception covering this device would silently keep granting (or denying)
        // it. runc refuses such a rule rather than let it look effective.
        for wide in [
            Meta {
                major: None,
                ..meta
            },
            Meta {
                minor: None,
                ..meta
            },
            Meta {
                major: None,
                minor: None,
                ..meta
            },
        ] {
            if wide == meta {
                continue;
            }
            if let Some(&held) = self.exceptions.get(&wide) {
                if held & access != 0 {
                    return Err(format!(
                        "{} cannot take access from part of the earlier rule {} (the devices \
                         cgroup would ignore it)",
                        meta_text(&meta, access),
                        meta_text(&wide, held)
                    ));
                }
            }
        }
        if let Some(held) = self.exceptions.get_mut(&meta) {
            *held &= !access;
            if *held == 0 {
                self.exceptions.remove(&meta);
            }
        }
        Ok(())
    }

    /// The rules that give a cgroup this state from any starting state: `a` for the
    /// default, then each exception, as `(allow, rule)` in devices.allow syntax.
    pub fn rules(&self) -> Vec<(bool, String)> {
        let mut out = vec![(self.default_allow, "a".to_string())];
        out.extend(
            self.exceptions
                .iter()
                .map(|(m, a)| (!self.default_allow, meta_text(m, *a))),
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(allow: bool, typ: char, major: Option<u32>, minor: Option<u32>, access: u8) -> Rule {
        Rule {
            allow,
            typ,
            major,
            minor,
            access,
        }
    }

    fn run(rules: &[Rule]) -> Result<Vec<(bool, String)>, String> {
        let mut e = Emulator::deny_all();
        for r in rules {
            e.apply(r)?;
        }
        Ok(e.rules())
    }

    fn texts(list: &[(bool, &str)]) -> Vec<(bool, String)> {
        list.iter().map(|(a, r)| (*a, r.to_string())).collect()
    }

    #[test]
    fn no_rules_deny_everything() {
        assert_eq!(run(&[]).unwrap(), texts(&[(false, "a")]));
    }

    #[test]
    fn allows_merge_and_sort_like_runc() {
        let got = run(&[
            rule(true, 'c', Some(1), Some(3), READ),
            rule(true, 'c', None, None, MKNOD),
            rule(true, 'c', Some(1), Some(3), WRITE | MKNOD),
            rule(true, 'b', None, None, MKNOD),
            rule(true, 'c', Some(136), None, RWM),
        ])
        .unwrap();
        assert_eq!(
            got,
            texts(&[
                (false, "a"),
                (true, "b *:* m"),
                (true, "c *:* m"),
                (true, "c 1:3 rwm"),
                (true, "c 136:* rwm"),
            ])
        );
    }

    #[test]
    fn a_resets_and_deny_takes_access_away() {
        let got = run(&[
            rule(true, 'c', Some(1), Some(3), RWM),
            rule(false, 'a', None, None, READ),
            rule(true, 'c', Some(1), Some(5), RWM),
            rule(false, 'c', Some(1), Some(5), WRITE),
        ])
        .unwrap();
        assert_eq!(got, texts(&[(false, "a"), (true, "c 1:5 rm")]));
        // allow a: everything, then deny exceptions.
        let got = run(&[
            rule(true, 'a', None, None, RWM),
            rule(false, 'c', Some(10), Some(232), RWM),
            rule(true, 'c', Some(10), Some(232), READ),
        ])
        .unwrap();
        assert_eq!(got, texts(&[(true, "a"), (false, "c 10:232 wm")]));
    }

    #[test]
    fn punching_a_hole_in_a_wildcard_is_refused() {
        let err = run(&[
            rule(true, 'c', None, None, MKNOD),
            rule(false, 'c', Some(10), Some(232), MKNOD),
        ])
        .unwrap_err();
        assert!(err.contains("c *:* m"), "{err}");
        // Other access than the wildcard holds is fine, and so is the same wildcard.
        assert!(run(&[
            rule(true, 'c', None, None, MKNOD),
            rule(false, 'c', Some(10), Some(232), READ),
            rule(false, 'c', None, None, MKNOD),
        ])
        .is_ok());
    }
}
