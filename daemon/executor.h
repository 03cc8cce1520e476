/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * The kernel executor (docs/architecture.md, "The kernel executor"). A mutating request runs as a
 * job: a small stack of its own on the loop's thread, so that its code reads as before (validate,
 * steps with their undo, commit), but where a step issues a KFD ioctl the job hands it to one of
 * the executor's worker threads and steps aside; the loop goes on decoding, answering reads and
 * running other jobs, and resumes the job when the worker is done (an eventfd in sd-event).
 *
 * Everything but the ioctl itself stays on the loop's thread: no Range or Manager state is ever
 * touched by a worker, and no lock guards it. What a job may interleave with is bounded by claims:
 * a job claims every range it validates or creates (JobClaim, Range.claim), and another job that
 * meets a claimed range waits for it and then starts its request again from the beginning.
 *
 * One Executor per KFD context: a job's ioctl runs on the fd it names, by a worker of the executor
 * the job was started on.
 */

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>

#include <systemd/sd-event.h>

#include "macro.h"

typedef struct Executor Executor;
typedef struct Job Job;

/* Returned by code running in a job when it met a range another job has claimed. */
#define JOB_RETRY (-ERESTART)

/*
 * A resource at most one job holds at a time. Every range has one, so it is two words: the jobs
 * waiting for it queue on its holder (in the order they came), as few claims ever have waiters.
 */
typedef struct JobClaim {
        Job *job;               /* the holder; NULL: free */
        struct JobClaim *job_next;      /* the holder's other claims */
} JobClaim;

typedef int (*JobFunc)(void *userdata);
/* A job that waited at least once ends here with its result. */
typedef void (*JobDoneFunc)(void *userdata, int result);

/* n_threads worker threads (at least 1); their signals are blocked. */
int executor_new(Executor **ret, sd_event *e, unsigned n_threads);
/* Runs every live job to its end first (executor_drain()). */
Executor *executor_free(Executor *x);
DEFINE_TRIVIAL_CLEANUP_FUNC(Executor *, executor_free);

/*
 * Run fn as a job. If it ends without waiting, its result is returned and done is not called.
 * Otherwise -EINPROGRESS: done(userdata, result) is called from the loop when it ends.
 */
int executor_spawn(Executor *x, JobFunc fn, JobDoneFunc done, void *userdata);

/* Jobs alive (running or waiting). */
unsigned executor_n_jobs(const Executor *x);
/* KFD ioctls of jobs with offload on, since the start: run on the loop's thread, and by a worker. */
void executor_get_ioctl_counts(const Executor *x, uint64_t *ret_inline, uint64_t *ret_offloaded);
/* Called from the loop whenever the last live job ended. */
void executor_set_idle_callback(Executor *x, void (*fn)(void *userdata), void *userdata);
/* Block until every live job has ended (exit paths; the loop is not running). */
void executor_drain(Executor *x);

/* The job running now, or NULL on the loop itself. */
Job *job_current(void);
/* While on, the current job's KFD ioctls run on a worker; off, on the loop as before. Returns the old value. */
bool job_set_offload(bool on);
/*
 * The current job's next ioctls concern buffers of at most EXECUTOR_SMALL_BYTES: they run on the
 * loop's thread, as they take less time in the kernel than the hand-over to a worker and back, while
 * nothing else waits for the loop (no other job alive, no event source of the loop ready), no ioctl
 * of a larger buffer is in flight (it may hold the kernel's process lock for long), and for the
 * first 250 µs after the job got the loop (a Commit of 1024 small allocations is not one dispatch).
 * Otherwise they go to a worker like every other, and the loop serves the others meanwhile.
 * Returns the old value.
 */
#define EXECUTOR_SMALL_BYTES (UINT64_C(2) << 20)
bool job_set_small(bool small);
/*
 * If the current job has had the loop for more than EXECUTOR_SLICE_USEC, let the loop serve others
 * and continue after them (a Commit's validation of 1024 operations). Only where stepping aside
 * is safe: what the job relies on is claimed. Outside a job: nothing.
 */
#define EXECUTOR_SLICE_USEC 250U
void job_maybe_yield(void);
/* Who the current job acts for (the daemon's Client), for the job's runner; NULL if unknown. */
void job_set_owner(void *owner);
void *job_get_owner(void);
/* Call fn(userdata) when the current job ends (after its claims are released). No job: -ENOENT. */
int job_on_end(void (*fn)(void *userdata), void *userdata);

/*
 * Claim c for the current job (no job: nothing to do, 0). Held by another job: JOB_RETRY, and the
 * job is to wait for it with job_wait() and start over.
 */
int job_claim(JobClaim *c);
/* As job_claim(), but job_wait() keeps it: for a claim taken before everything else. */
int job_claim_keep(JobClaim *c);
/* As job_claim(), but only waits: c stays free. */
int job_claim_check(JobClaim *c);
/* Held by a job other than the current one. */
bool job_claim_held(const JobClaim *c);
/* The claimed object goes away: its holder lets go and its waiters start over. */
void job_claim_drop(JobClaim *c);
/* After JOB_RETRY: wait until the claim the job met is released (or dropped). */
void job_wait(void);

/*
 * Hold c for the loop's own work, outside any job: jobs that claim or check it wait as for a job
 * (a compaction of the journal that is due, persist.c). Release resumes them, at once when called
 * outside a job, else when the current job gives the loop back.
 */
void executor_claim_hold(Executor *x, JobClaim *c);
void executor_claim_release(Executor *x, JobClaim *c);

/* The hook kfd/ calls for every KFD ioctl (kfd_set_ioctl_hook()). */
int executor_ioctl(int fd, unsigned long request, void *arg);
