/* SPDX-License-Identifier: LGPL-2.1-or-later */

/* smi_event_parse(): the line formats of kfd_smi_events.c, old and new (docs/architecture.md, "GPU health"). */

#include <errno.h>
#include <string.h>

#include "health.h"
#include "unit-assert.h"

static void test_reset_lines(void) {
        SmiEvent ev;

        /* Before the cause was added: "%x %x\n". */
        ASSERT_OK(smi_event_parse("3 1", &ev));
        ASSERT_CMP_UINT(ev.event, ==, HEALTH_SMI_GPU_PRE_RESET);
        ASSERT_CMP_UINT(ev.seq, ==, 1);
        ASSERT_STREQ(ev.text, "");
        /* KFD_EVENT_FMT_UPDATE_GPU_RESET(seq, cause); the post-reset cause is empty. */
        ASSERT_OK(smi_event_parse("3 1f job hang", &ev));
        ASSERT_CMP_UINT(ev.seq, ==, 0x1f);
        ASSERT_STREQ(ev.text, "job hang");
        ASSERT_OK(smi_event_parse("4 1f ", &ev));
        ASSERT_CMP_UINT(ev.event, ==, HEALTH_SMI_GPU_POST_RESET);
        ASSERT_CMP_UINT(ev.seq, ==, 0x1f);
        ASSERT_STREQ(ev.text, "");
        ASSERT_ERROR(smi_event_parse("3 ", &ev), EINVAL);
        ASSERT_ERROR(smi_event_parse("3 x", &ev), EINVAL);
        ASSERT_ERROR(smi_event_parse("3 1x", &ev), EINVAL);
        ASSERT_ERROR(smi_event_parse("3 100000000", &ev), EINVAL);
}

static void test_vmfault_line(void) {
        SmiEvent ev;

        /* KFD_EVENT_FMT_VMFAULT(pid, task_name): the pid in hex. */
        ASSERT_OK(smi_event_parse("1 4d2:my worker", &ev));
        ASSERT_CMP_UINT(ev.event, ==, HEALTH_SMI_VMFAULT);
        ASSERT_CMP_INT(ev.pid, ==, 1234);
        ASSERT_STREQ(ev.text, "my worker");
        ASSERT_OK(smi_event_parse("1 1:", &ev));
        ASSERT_STREQ(ev.text, "");
        ASSERT_ERROR(smi_event_parse("1 0:kworker", &ev), EINVAL);
        ASSERT_ERROR(smi_event_parse("1 4d2 task", &ev), EINVAL);
        ASSERT_ERROR(smi_event_parse("1 80000000:x", &ev), EINVAL);
}

static void test_thermal_line(void) {
        SmiEvent ev;

        ASSERT_OK(smi_event_parse("2 8:1a", &ev));
        ASSERT_CMP_UINT(ev.a, ==, 8);
        ASSERT_CMP_UINT(ev.b, ==, 0x1a);
        ASSERT_ERROR(smi_event_parse("2 8", &ev), EINVAL);
}

static void test_other_lines(void) {
        SmiEvent ev;

        /* Events svmd does not act on are skipped, not errors. */
        ASSERT_ERROR(smi_event_parse("9 123 -4 3a1f 3", &ev), EOPNOTSUPP);
        ASSERT_ERROR(smi_event_parse("c 4d2 worker", &ev), EOPNOTSUPP);
        /* Not the kernel's framing. */
        ASSERT_ERROR(smi_event_parse("", &ev), EINVAL);
        ASSERT_ERROR(smi_event_parse("3", &ev), EINVAL);
        ASSERT_ERROR(smi_event_parse("0 1", &ev), EINVAL);
        ASSERT_ERROR(smi_event_parse("41 1", &ev), EINVAL);
        ASSERT_ERROR(smi_event_parse("zz 1", &ev), EINVAL);
}

int main(void) {
        test_reset_lines();
        test_vmfault_line();
        test_thermal_line();
        test_other_lines();
        return 0;
}
