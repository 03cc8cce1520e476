/* SPDX-License-Identifier: LGPL-2.1-or-later */

/* Claims held by the loop itself (executor_claim_hold()): jobs that meet one wait until it is released. */

#include <stdio.h>
#include <stdlib.h>

#include <systemd/sd-event.h>

#include "executor.h"
#include "macro.h"
#include "unit-assert.h"

typedef struct Probe {
        JobClaim *gate;
        JobClaim *own;
        unsigned tries;         /* runs of the job's function up to its JOB_RETRY or its end */
        bool passed;
        int done;
} Probe;

/* Claims its own resource, then checks the gate, as a request's validation does. */
static int probe_run(void *userdata) {
        Probe *p = userdata;
        int r;

        for (;;) {
                p->tries++;
                r = job_claim(p->own);
                if (r == 0)
                        r = job_claim_check(p->gate);
                if (r != JOB_RETRY)
                        break;
                job_wait();
        }
        p->passed = r == 0;
        return 7;
}

static void probe_done(void *userdata, int result) {
        Probe *p = userdata;

        p->done = result;
}

static void test_loop_hold(void) {
        _cleanup_(sd_event_unrefp) sd_event *e = NULL;
        _cleanup_(executor_freep) Executor *x = NULL;
        JobClaim gate = {}, own = {};
        Probe a = { .gate = &gate, .own = &own }, b = { .gate = &gate, .own = &own };

        ASSERT_OK(sd_event_new(&e));
        ASSERT_OK(executor_new(&x, e, 1));

        /* Free: a job passes at once. */
        ASSERT_EQ(executor_spawn(x, probe_run, probe_done, &a), 7);
        ASSERT_TRUE(a.passed);
        ASSERT_EQ(a.tries, 1U);
        ASSERT_TRUE(!own.job);

        /* Held by the loop: both wait, and what they had claimed is released while they do. */
        a = (Probe) { .gate = &gate, .own = &own };
        executor_claim_hold(x, &gate);
        ASSERT_TRUE(job_claim_held(&gate));
        ASSERT_EQ(executor_spawn(x, probe_run, probe_done, &a), -EINPROGRESS);
        ASSERT_EQ(executor_spawn(x, probe_run, probe_done, &b), -EINPROGRESS);
        ASSERT_EQ(executor_n_jobs(x), 2U);
        ASSERT_TRUE(!own.job);
        ASSERT_TRUE(!a.passed && !b.passed);

        /* Released outside a job: both run to their end before the call returns. */
        executor_claim_release(x, &gate);
        ASSERT_TRUE(!job_claim_held(&gate));
        ASSERT_EQ(executor_n_jobs(x), 0U);
        ASSERT_TRUE(a.passed && b.passed);
        ASSERT_EQ(a.tries, 2U);
        ASSERT_EQ(a.done, 7);
        ASSERT_EQ(b.done, 7);
        ASSERT_TRUE(!own.job);
}

int main(void) {
        test_loop_hold();
        printf("executor: ok\n");
        return 0;
}
