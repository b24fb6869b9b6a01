//! Per-vCPU CPUID: what KVM supports, with the topology (APIC ids, core counts, leaf 0xb) made
//! to describe this VM, the hypervisor bit set, no PMU, and optionally some features hidden.

use kvm_bindings::{kvm_cpuid_entry2, KVM_CPUID_FLAG_SIGNIFCANT_INDEX};

/// A register of a CPUID leaf.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reg {
    Eax,
    Ebx,
    Ecx,
    Edx,
}

/// One CPUID feature bit the guest must not see.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Feature {
    pub leaf: u32,
    pub reg: Reg,
    pub bit: u8,
}

/// `cmpxchg16b`; some nested hypervisors cannot emulate it.
pub const CX16: Feature = Feature {
    leaf: 1,
    reg: Reg::Ecx,
    bit: 13,
};
/// XSAVE/XRSTOR (and so AVX and friends, which the kernel drops with it).
pub const XSAVE: Feature = Feature {
    leaf: 1,
    reg: Reg::Ecx,
    bit: 26,
};

/// How to shape the CPUID of every vCPU.
#[derive(Debug, Clone, Default)]
pub struct CpuidPolicy {
    /// Advertise the TSC-deadline LAPIC timer (KVM emulates it with the in-kernel LAPIC).
    pub tsc_deadline: bool,
    /// Feature bits to clear.
    pub hidden: Vec<Feature>,
}

const LEAF1_ECX_TSC_DEADLINE: u32 = 1 << 24;
const LEAF1_ECX_OSXSAVE: u32 = 1 << 27;
const LEAF1_ECX_HYPERVISOR: u32 = 1 << 31;
const LEAF1_EDX_HTT: u32 = 1 << 28;
const TOPOLOGY_LEVEL_SMT: u32 = 1;
const TOPOLOGY_LEVEL_CORE: u32 = 2;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Vendor {
    Intel,
    Amd,
    Other,
}

fn vendor(entries: &[kvm_cpuid_entry2]) -> Vendor {
    match entries.iter().find(|e| e.function == 0) {
        Some(e) => {
            let mut id = Vec::with_capacity(12);
            for r in [e.ebx, e.edx, e.ecx] {
                id.extend_from_slice(&r.to_le_bytes());
            }
            match &id[..] {
                b"GenuineIntel" => Vendor::Intel,
                b"AuthenticAMD" | b"HygonGenuine" => Vendor::Amd,
                _ => Vendor::Other,
            }
        }
        None => Vendor::Other,
    }
}

/// Bits needed to number `n` items (the x2APIC id shift of a topology level).
fn id_bits(n: u32) -> u32 {
    if n <= 1 {
        0
    } else {
        32 - (n - 1).leading_zeros()
    }
}

fn reg_mut(e: &mut kvm_cpuid_entry2, reg: Reg) -> &mut u32 {
    match reg {
        Reg::Eax => &mut e.eax,
        Reg::Ebx => &mut e.ebx,
        Reg::Ecx => &mut e.ecx,
        Reg::Edx => &mut e.edx,
    }
}

fn topology_entries(function: u32, apic_id: u32, cpu_count: u32) -> Vec<kvm_cpuid_entry2> {
    let level = |index: u32, eax: u32, ebx: u32, kind: u32| kvm_cpuid_entry2 {
        function,
        index,
        flags: KVM_CPUID_FLAG_SIGNIFCANT_INDEX,
        eax,
        ebx,
        ecx: (kind << 8) | index,
        edx: apic_id,
        ..Default::default()
    };
    vec![
        // One thread per core, `cpu_count` cores in one package.
        level(0, 0, 1, TOPOLOGY_LEVEL_SMT),
        level(1, id_bits(cpu_count), cpu_count, TOPOLOGY_LEVEL_CORE),
        level(2, 0, 0, 0),
    ]
}

/// Shapes KVM's supported CPUID for vCPU `cpu` (its APIC id) of `cpu_count`.
pub fn for_vcpu(
    supported: &[kvm_cpuid_entry2],
    cpu: u8,
    cpu_count: u8,
    policy: &CpuidPolicy,
) -> Vec<kvm_cpuid_entry2> {
    let vendor = vendor(supported);
    let apic_id = u32::from(cpu);
    let count = u32::from(cpu_count.max(1));
    let mut out: Vec<kvm_cpuid_entry2> = Vec::with_capacity(supported.len() + 6);
    let mut topology_leaves = Vec::new();

    for entry in supported {
        let mut e = *entry;
        match e.function {
            0x1 => {
                e.ebx = (e.ebx & 0x0000_00ff) | (apic_id << 24) | (count.min(255) << 16) | (8 << 8);
                e.ecx |= LEAF1_ECX_HYPERVISOR;
                if policy.tsc_deadline {
                    e.ecx |= LEAF1_ECX_TSC_DEADLINE;
                }
                // OSXSAVE mirrors CR4 and is set by KVM at run time.
                e.ecx &= !LEAF1_ECX_OSXSAVE;
                if count > 1 {
                    e.edx |= LEAF1_EDX_HTT;
                } else {
                    e.edx &= !LEAF1_EDX_HTT;
                }
            }
            0x4 if vendor == Vendor::Intel => {
                let cache_level = (e.eax >> 5) & 0x7;
                let sharing = if cache_level >= 3 { count - 1 } else { 0 };
                e.eax &= 0x3fff;
                e.eax |= ((count - 1).min(63) << 26) | ((sharing & 0xfff) << 14);
            }
            // No PMU is offered.
            0xa => {
                e.eax = 0;
                e.ebx = 0;
                e.ecx = 0;
                e.edx = 0;
            }
            0xb | 0x1f => {
                if !topology_leaves.contains(&e.function) {
                    topology_leaves.push(e.function);
                }
                continue;
            }
            0x8000_0008 if vendor == Vendor::Amd => {
                e.ecx = (e.ecx & !0xf0ff) | (id_bits(count) << 12) | (count - 1);
            }
            0x8000_001e if vendor == Vendor::Amd => {
                e.eax = apic_id;
                e.ebx = (e.ebx & !0xffff) | apic_id & 0xff;
                e.ecx &= !0xff;
            }
            _ => {}
        }
        out.push(e);
    }
    for function in topology_leaves {
        out.extend(topology_entries(function, apic_id, count));
    }
    if policy.hidden.contains(&XSAVE) {
        // Without XSAVE the state-component leaf must not advertise anything either.
        for e in out.iter_mut().filter(|e| e.function == 0xd) {
            e.eax = 0;
            e.ebx = 0;
            e.ecx = 0;
            e.edx = 0;
        }
    }
    for feature in &policy.hidden {
        for e in out.iter_mut().filter(|e| e.function == feature.leaf) {
            *reg_mut(e, feature.reg) &= !(1u32 << feature.bit);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(
        function: u32,
        index: u32,
        eax: u32,
        ebx: u32,
        ecx: u32,
        edx: u32,
    ) -> kvm_cpuid_entry2 {
        kvm_cpuid_entry2 {
            function,
            index,
            eax,
            ebx,
            ecx,
            edx,
            ..Default::default()
        }
    }

    fn intel() -> Vec<kvm_cpuid_entry2> {
        // "GenuineIntel" is ebx="Genu", edx="ineI", ecx="ntel".
        let r = |s: &[u8; 4]| u32::from_le_bytes(*s);
        vec![
            entry(0, 0, 0x1f, r(b"Genu"), r(b"ntel"), r(b"ineI")),
            entry(
                1,
                0,
                0x906ea,
                0xff00_0800,
                (1 << 13) | (1 << 26) | (1 << 27),
                0,
            ),
            entry(4, 0, 0x121, 0, 0, 0),
            entry(4, 3, 0x163, 0, 0, 0),
            entry(0xa, 0, 0x0704_3004, 0xff, 0, 0x603),
            entry(0xb, 0, 1, 2, 0x100, 7),
            entry(0xb, 1, 4, 8, 0x201, 7),
            entry(0x4000_0000, 0, 0x4000_0001, 0, 0, 0),
        ]
    }

    fn find(v: &[kvm_cpuid_entry2], f: u32, i: u32) -> kvm_cpuid_entry2 {
        *v.iter().find(|e| e.function == f && e.index == i).unwrap()
    }

    #[test]
    fn leaf1_carries_apic_id_count_and_hypervisor_bit() {
        let out = for_vcpu(&intel(), 3, 4, &CpuidPolicy::default());
        let l1 = find(&out, 1, 0);
        assert_eq!(l1.ebx >> 24, 3);
        assert_eq!((l1.ebx >> 16) & 0xff, 4);
        assert_ne!(l1.ecx & LEAF1_ECX_HYPERVISOR, 0);
        assert_ne!(l1.edx & LEAF1_EDX_HTT, 0);
        assert_eq!(l1.ecx & LEAF1_ECX_OSXSAVE, 0);
        let single = for_vcpu(&intel(), 0, 1, &CpuidPolicy::default());
        assert_eq!(find(&single, 1, 0).edx & LEAF1_EDX_HTT, 0);
    }

    #[test]
    fn leaf_b_describes_this_vm() {
        let out = for_vcpu(&intel(), 2, 3, &CpuidPolicy::default());
        let smt = find(&out, 0xb, 0);
        let core = find(&out, 0xb, 1);
        let end = find(&out, 0xb, 2);
        assert_eq!((smt.eax, smt.ebx, smt.ecx >> 8, smt.edx), (0, 1, 1, 2));
        assert_eq!((core.eax, core.ebx, core.ecx >> 8, core.edx), (2, 3, 2, 2));
        assert_eq!(end.ecx >> 8, 0);
        assert!(out
            .iter()
            .all(|e| e.function != 0xb || e.flags & KVM_CPUID_FLAG_SIGNIFCANT_INDEX != 0));
        assert_eq!(out.iter().filter(|e| e.function == 0xb).count(), 3);
    }

    #[test]
    fn caches_pmu_and_hidden_features() {
        let policy = CpuidPolicy {
            tsc_deadline: true,
            hidden: vec![CX16, XSAVE],
        };
        let out = for_vcpu(&intel(), 0, 4, &policy);
        let l1 = find(&out, 1, 0);
        assert_eq!(l1.ecx & (1 << 13), 0);
        assert_eq!(l1.ecx & (1 << 26), 0);
        assert_ne!(l1.ecx & LEAF1_ECX_TSC_DEADLINE, 0);
        assert_eq!(find(&out, 4, 0).eax >> 26, 3);
        assert_eq!((find(&out, 4, 0).eax >> 14) & 0xfff, 0);
        assert_eq!((find(&out, 4, 3).eax >> 14) & 0xfff, 3);
        let pmu = find(&out, 0xa, 0);
        assert_eq!((pmu.eax, pmu.ebx, pmu.edx), (0, 0, 0));
        // Leaves the policy does not touch pass through.
        assert_eq!(find(&out, 0x4000_0000, 0).eax, 0x4000_0001);
    }

    #[test]
    fn id_bits_counts() {
        assert_eq!(id_bits(1), 0);
        assert_eq!(id_bits(2), 1);
        assert_eq!(id_bits(3), 2);
        assert_eq!(id_bits(4), 2);
        assert_eq!(id_bits(5), 3);
        assert_eq!(id_bits(32), 5);
    }
}
