#include "seccomp-filter.h"

#include <errno.h>
#include <sched.h>
#include <seccomp.h>
#include <stddef.h>
#include <sys/mman.h>
#include <sys/stat.h>

#include "util.h"

/* Administrative, kernel-module, namespace, mount, keyring and clock calls: no app needs
 * them and each widens what a dyno can reach. */
static const char *const denied[] = {
        "acct",
        "add_key",
        "bpf",
        "clock_adjtime",
        "clock_settime",
        "create_module",
        "delete_module",
        "finit_module",
        "fsconfig",
        "fsmount",
        "fsopen",
        "fspick",
        "get_kernel_syms",
        "get_mempolicy",
        "init_module",
        "ioperm",
        "iopl",
        "kcmp",
        "kexec_file_load",
        "kexec_load",
        "keyctl",
        "lookup_dcookie",
        "mbind",
        "mount",
        "mount_setattr",
        "move_mount",
        "move_pages",
        "name_to_handle_at",
        "nfsservctl",
        "open_by_handle_at",
        "open_tree",
        "perf_event_open",
        "personality",
        "pivot_root",
        "process_vm_readv",
        "process_vm_writev",
        "ptrace",
        "query_module",
        "quotactl",
        "quotactl_fd",
        "reboot",
        "request_key",
        "set_mempolicy",
        "setns",
        "settimeofday",
        "stime",
        "swapoff",
        "swapon",
        "_sysctl",
        "syslog",
        "umount",
        "umount2",
        "unshare",
        "uselib",
        "userfaultfd",
        "ustat",
        "vm86",
        "vm86old",
        "adjtimex",
        "pidfd_getfd",
};

static int build(scmp_filter_ctx *ret)
{
        scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_ALLOW);
        if (!ctx)
                return -ENOMEM;
        int r;

        /* 32-bit entry points reach the same kernel: filter them too. */
        static const uint32_t arches[] = { SCMP_ARCH_X86, SCMP_ARCH_X32 };
        if (seccomp_arch_native() == SCMP_ARCH_X86_64)
                for (size_t i = 0; i < ELEMENTSOF(arches); i++) {
                        r = seccomp_arch_add(ctx, arches[i]);
                        if (r < 0 && r != -EEXIST)
                                goto fail;
                }

        for (size_t i = 0; i < ELEMENTSOF(denied); i++) {
                int nr = seccomp_syscall_resolve_name(denied[i]);
                if (nr == __NR_SCMP_ERROR)
                        continue; /* unknown to this libseccomp */
                r = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), nr, 0);
                if (r < 0 && r != -EDOM) /* -EDOM: not on one of the arches */
                        goto fail;
        }

        /* clone with a namespace flag is unshare by another name: one rule per flag, as a
         * filter compares a masked argument for equality only. */
        static const uint64_t ns_flags[] = { CLONE_NEWNS,    CLONE_NEWUTS, CLONE_NEWIPC,
                                             CLONE_NEWUSER,  CLONE_NEWPID, CLONE_NEWNET,
                                             CLONE_NEWCGROUP };
        for (size_t i = 0; i < ELEMENTSOF(ns_flags); i++) {
                r = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(clone), 1,
                                     SCMP_A0(SCMP_CMP_MASKED_EQ, ns_flags[i], ns_flags[i]));
                if (r < 0)
                        goto fail;
        }
        /* clone3 passes its flags in memory, out of a filter's reach: ENOSYS makes libc fall
         * back to clone, which is checked above. */
        r = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(ENOSYS), SCMP_SYS(clone3), 0);
        if (r < 0)
                goto fail;

        *ret = ctx;
        return 0;
fail:
        seccomp_release(ctx);
        return r;
}

int dyno_seccomp_new(struct sock_fprog *ret)
{
        scmp_filter_ctx ctx;
        int r = build(&ctx);
        if (r < 0)
                return r;
        /* libseccomp exports to a descriptor only: a memfd holds the program. */
        _cleanup_close_ int fd = memfd_create("hostd-seccomp", MFD_CLOEXEC);
        if (fd < 0) {
                r = -errno;
                seccomp_release(ctx);
                return r;
        }
        r = seccomp_export_bpf(ctx, fd);
        seccomp_release(ctx);
        if (r < 0)
                return r;
        struct stat st;
        if (fstat(fd, &st) < 0)
                return -errno;
        size_t n = (size_t)st.st_size / sizeof(struct sock_filter);
        if (n == 0 || n > BPF_MAXINSNS || (size_t)st.st_size % sizeof(struct sock_filter))
                return -EBADMSG;
        struct sock_filter *insns = malloc((size_t)st.st_size);
        if (!insns)
                return -ENOMEM;
        if (pread(fd, insns, (size_t)st.st_size, 0) != st.st_size) {
                free(insns);
                return -EIO;
        }
        *ret = (struct sock_fprog){ .len = (unsigned short)n, .filter = insns };
        return 0;
}

void dyno_seccomp_free(struct sock_fprog *prog)
{
        free(prog->filter);
        *prog = (struct sock_fprog){};
}
