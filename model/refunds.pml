/*
 * The refunds the shop starts, for Spin: a model of its own beside paystore.pml (model/README.md,
 * "Refunds", maps every step to the code).
 *
 * Purchase A of one user and program was paid CHARGED. Two shop refund requests of A, each with
 * its own Idempotency-Key, race: request 0 asks for 3, request 1 for the rest (no amount). Stripe
 * records each refund it makes and refuses one of more than its charge still has. A refund may
 * fail later at Stripe (the money goes back to the shop): Stripe then sends refund.failed, and the
 * webhook under purchase:complete:A re-derives A, which may become active again. A second checkout
 * of the same user and program may meanwhile have created purchase B, active: the clash check
 * must then send A to needs_review. Crashes (the connection drops), lock timeouts and a Stripe
 * answer that comes too late happen within a shared budget of FAULTS.
 *
 * Broken variants, each expected to produce a counterexample:
 *   -DNO_REFUND_LOCK   refund() does not take purchase:refund:<id>
 *   -DNO_CLASH_CHECK   apply() lets A become active again without looking for another purchase
 *   -DSTRICT_ASK       not a broken protocol: the ask invariant without its lost-answer exception
 *                      (README: a lost answer), to keep that known limit checked
 */

#ifndef FAULTS
#define FAULTS 1
#endif

#define CHARGED 4               /* what the buyer paid for A, in the charge's currency */
#define FULL 0                  /* a request without an amount: refund what is left */

/* advisory lock keys; the lock order is RKEY -> PKEY -> CKEY, and checkout's CKEY -> BKEY */
#define RKEY 0                  /* purchase:refund:<A> */
#define PKEY 1                  /* purchase:complete:<A> */
#define CKEY 2                  /* purchase:create:<user>:<program> */
#define BKEY 3                  /* purchase:complete:<B>, B a fresh id */

/* a refund's fact (domain/refund.py); the order is the only one it moves in: forward */
#define R_NONE 0                /* no such refund */
#define R_COUNTS 1              /* pending, requires_action or succeeded: it counts */
#define R_FAILED 2              /* failed (or canceled): it no longer counts */

#define MAX(a, b) (((a) > (b)) -> (a) : (b))

/* --- PostgreSQL --------------------------------------------------------------------------- */
byte lk[4];                     /* holder of each advisory xact lock: a transaction (pid + 1) */

/* committed versions */
byte kst[2];                    /* refunds table: paystore's fact of refund k (Stripe's amount) */
bit rev;                        /* A's review_reason: needs_review, not active */
bit req[2];                     /* refund_requests: the shop's Idempotency-Key k is recorded */
bit exB;                        /* purchase B exists (pending: active) */
/* uncommitted versions: the writer of A's row (pid + 1) and whether its new version is active;
   the writer of B's row */
byte aowner;
bit pactA;
byte bowner;

/* --- Stripe ------------------------------------------------------------------------------- */
byte sst[2];                    /* Stripe's refund made with the Idempotency-Key of request k */
byte samt[2];                   /* its amount */
bit ev_created[2];              /* refund.created of refund k sent (redelivered until a 2xx) */
bit ev_failed[2];               /* refund.failed of refund k sent */

byte faults = FAULTS;           /* crashes, lock timeouts and late answers still allowed */

/* --- ghost state for the properties ------------------------------------------------------- */
bit inflight[2];                /* request k holds Stripe's answer in a transaction not yet ended */
byte asked_total;               /* at the last new refund asked for: what counts at Stripe with it */

/* what the refunds with these facts add up to: the purchase's refunded amount */
#define COUNTED(s0, s1) ((((s0) == R_COUNTS) -> samt[0] : 0) + (((s1) == R_COUNTS) -> samt[1] : 0))
#define STRIPE_REFUNDED COUNTED(sst[0], sst[1])
#define KNOWN_REFUNDED COUNTED(kst[0], kst[1])
/* lifecycle.derive_status: needs_review, refunded (in full), or completed, which is active */
#define A_ACTIVE_OF(s0, s1, r) (!(r) && COUNTED(s0, s1) < CHARGED)
#define A_ACTIVE A_ACTIVE_OF(kst[0], kst[1], rev)

/* A refund that counts at Stripe and that paystore knows nothing of, while no transaction holds
   Stripe's answer: its request lost the answer (a crash, or the answer came too late) and neither
   a retry with the same key nor refund.created has brought it in yet. */
#define UNKNOWN(j) (sst[j] == R_COUNTS && kst[j] == R_NONE && !inflight[j])
#if defined(STRICT_ASK)
#define LOST 0
#else
#define LOST (UNKNOWN(0) || UNKNOWN(1))
#endif

/* paystore never asks Stripe for a new refund of more than is left of the charge: asked_total, the
   refunds that count at Stripe plus the one asked for, stays within what was charged (a refund
   that failed gave its money back and makes room again; a request without an amount asks for what
   is left, which is too much only when nothing is). It holds unless an answer was lost before
   paystore read what is left (blind, README). */
#define ASK_FITS(amt) \
	asked_total = ((amt) == FULL -> ((STRIPE_REFUNDED < CHARGED) -> CHARGED : CHARGED + 1) : STRIPE_REFUNDED + (amt)); \
	if \
	:: (amt) == FULL -> printf("MSC: %d asks Stripe for the rest: asked_total %d\n", _pid, asked_total) \
	:: else -> printf("MSC: %d asks Stripe for %d: asked_total %d\n", _pid, amt, asked_total) \
	fi; \
	assert(asked_total <= CHARGED || blind)
/* Stripe refuses a refund of more than the charge has left (an InvalidRequestError: 409) */
#define STRIPE_REFUSES(amt) (((amt) == FULL && STRIPE_REFUNDED >= CHARGED) || ((amt) != FULL && STRIPE_REFUNDED + (amt) > CHARGED))

/* checked at every commit and in every final state */
#define SAFETY \
	assert(!(A_ACTIVE && exB));                        /* one active purchase per user+program */ \
	assert(!rev || exB)                                /* needs_review only beside another */

/* In the correct protocol the creation lock decides every clash before a write reaches the
   partial unique index: it never refuses nor makes a write wait. Asserted there. */
#if !defined(NO_CLASH_CHECK)
#define INDEX_QUIET(ok) assert(ok);
#else
#define INDEX_QUIET(ok)
#endif

/* --- transactions ------------------------------------------------------------------------- */
/* me: pid + 1; nk, nrev: A's new version computed from the version read, wasactive: the version
   read was active; nreq: the request key recorded (2: none); wA, wB: a row version written;
   fly: the request whose Stripe answer this transaction holds (2: none) */
#define TXN_LOCALS byte me = _pid + 1, nreq = 2, fly = 2; byte nk[2]; bit nrev, wasactive, wA, wB

#define GRANT(k) lk[k] = me; printf("MSC: %d locks key %d\n", _pid, k)
/* pg_advisory_xact_lock(k) under lock_timeout: waits while another transaction holds the lock; a
   timeout (a fault) raises LockTimeout (503): goto busy */
#define LOCK(k, busy) \
	if \
	:: atomic { lk[k] == 0 || lk[k] == me -> GRANT(k) } \
	:: atomic { faults > 0 && lk[k] != 0 && lk[k] != me -> faults--; printf("MSC: %d lock_timeout on key %d\n", _pid, k) }; goto busy \
	fi

#define REL(k) if :: lk[k] == me -> lk[k] = 0 :: else -> skip fi
/* COMMIT, ROLLBACK and a dropped connection all release the transaction's advisory locks */
#define RELEASE_XACT_LOCKS REL(0); REL(1); REL(2); REL(3)

inline commit() {
	printf("MSC: %d COMMIT\n", _pid);
	if
	:: wA -> kst[0] = nk[0]; kst[1] = nk[1]; rev = nrev; aowner = 0; pactA = 0;
		if :: nreq < 2 -> req[nreq] = 1 :: else -> skip fi
	:: else -> skip
	fi;
	if :: wB -> exB = 1; bowner = 0 :: else -> skip fi;
	RELEASE_XACT_LOCKS;
	if :: fly < 2 -> inflight[fly] = 0; fly = 2 :: else -> skip fi;
	SAFETY;
	wA = 0; wB = 0; nreq = 2
}

/* ROLLBACK, or PostgreSQL noticing the dropped connection: uncommitted versions vanish */
inline rollback() {
	printf("MSC: %d ROLLBACK\n", _pid);
	if :: wA -> aowner = 0; pactA = 0 :: else -> skip fi;
	if :: wB -> bowner = 0 :: else -> skip fi;
	RELEASE_XACT_LOCKS;
	if :: fly < 2 -> inflight[fly] = 0; fly = 2 :: else -> skip fi;
	wA = 0; wB = 0; nreq = 2
}

/* Read A (READ COMMITTED: the committed version) under the purchase lock, and merge into it the
   fact st of refund k (domain/refund.merged: forward only) */
#define READ_A_MERGE(k, st) atomic { wasactive = A_ACTIVE; nk[0] = kst[0]; nk[1] = kst[1]; nrev = rev; \
	nk[k] = MAX(nk[k], st); printf("MSC: %d reads A: refunds %d %d, review %d\n", _pid, kst[0], kst[1], rev) }

/* lifecycle.apply with money_back.clash_with_another_purchase: a purchase that would become
   active again takes the creation lock (after its own: RKEY -> PKEY -> CKEY) and, if another
   purchase of the user and program is active, goes to needs_review instead */
#if !defined(NO_CLASH_CHECK)
#define CLASH_CHECK(busy) \
	if \
	:: !wasactive && A_ACTIVE_OF(nk[0], nk[1], nrev) -> \
		LOCK(CKEY, busy); \
		atomic { if :: exB -> nrev = 1; printf("MSC: %d A would be active beside B: needs_review\n", _pid) :: else -> skip fi } \
	:: else -> skip \
	fi
#else
#define CLASH_CHECK(busy) skip
#endif

/* purchases.write (and refunds.write, refunds.add_request) of A's new version. The partial unique
   index on active purchases: a new active version of A waits for B's uncommitted insert, then
   raises IntegrityError (goto refused) if B committed. Every writer of A holds PKEY. */
#define WRITE_A(refused) \
	atomic { \
		assert(aowner == 0); \
		INDEX_QUIET(!(A_ACTIVE_OF(nk[0], nk[1], nrev) && (bowner != 0 || exB))) \
		!(A_ACTIVE_OF(nk[0], nk[1], nrev) && bowner != 0) -> \
		if \
		:: A_ACTIVE_OF(nk[0], nk[1], nrev) && exB -> printf("MSC: %d IntegrityError (one active): A beside B\n", _pid); goto refused \
		:: else -> aowner = me; pactA = A_ACTIVE_OF(nk[0], nk[1], nrev); wA = 1; \
			printf("MSC: %d writes A: refunds %d %d, review %d\n", _pid, nk[0], nk[1], nrev) \
		fi \
	}

/* --- purchasing/refunds.refund: POST /purchases/A/refunds with Idempotency-Key k ------------ */
proctype Refund(byte k; byte amt) {
	TXN_LOCALS;
	bit blind;                   /* a lost answer was unknown to paystore when it read what is left */
attempt:
#if !defined(NO_REFUND_LOCK)
	LOCK(RKEY, busy);
#endif
	/* purchases.get, refunds.request, _check_refundable: the committed purchase and request */
	if
	:: atomic { req[k] -> printf("MSC: %d key %d was answered before: the same refund\n", _pid, k); commit() }; goto done
	:: atomic { !req[k] && !A_ACTIVE -> printf("MSC: %d 409 not refundable\n", _pid); commit() }; goto done
	:: atomic { !req[k] && A_ACTIVE && amt != FULL && amt > CHARGED - KNOWN_REFUNDED ->
		printf("MSC: %d 400 refund too large: %d left\n", _pid, CHARGED - KNOWN_REFUNDED); commit() }; goto done
	:: atomic { !req[k] && A_ACTIVE && (amt == FULL || amt <= CHARGED - KNOWN_REFUNDED) -> blind = LOST;
		printf("MSC: %d reads A: %d left\n", _pid, CHARGED - KNOWN_REFUNDED) }
	fi;
	/* gateway.create_refund with Stripe's idempotency key refund:A:k */
	atomic {
		if
		:: sst[k] != R_NONE -> printf("MSC: %d Stripe answers its refund %d again\n", _pid, k)
		:: else ->
			ASK_FITS(amt);
			if
			:: STRIPE_REFUSES(amt) -> printf("MSC: %d Stripe refuses: 409\n", _pid); rollback(); goto done
			:: else -> samt[k] = ((amt == FULL) -> CHARGED - STRIPE_REFUNDED : amt); sst[k] = R_COUNTS; ev_created[k] = 1;
				printf("MSC: Stripe makes refund %d of %d (sends refund.created)\n", k, samt[k])
			fi
		fi
	};
	if
	:: atomic { inflight[k] = 1; fly = k }
	/* Stripe made it, but its answer comes too late: StripeUnavailable, rollback, 502 */
	:: atomic { faults > 0 -> faults--; printf("MSC: %d Stripe's answer too late: 502\n", _pid) }; goto busy
	fi;
	/* _apply: the purchase's own lock, the answer merged as a webhook would, the request recorded */
	LOCK(PKEY, busy);
	READ_A_MERGE(k, R_COUNTS);
	nreq = k;
	CLASH_CHECK(busy);
	WRITE_A(busy);
	/* (a crash before this commit is, to every other process, the late answer above: README) */
	if
	:: atomic { commit(); printf("MSC: %d 201 refund %d\n", _pid, k) }; goto done
	/* committed, but the worker dies before answering: the shop retries */
	:: atomic { faults > 0 -> faults--; commit(); printf("MSC: %d dies before answering\n", _pid) }; goto retry
	fi;
busy:                            /* 503, 502, a dropped connection: rollback */
	atomic { rollback() };
retry:                           /* the shop retries with the same Idempotency-Key, or gives up */
	if :: goto attempt :: skip fi;
done:
	skip
}

/* --- checkout.start_checkout of the same user and program, creating purchase B ------------- */
proctype Checkout() {
	TXN_LOCALS;
	LOCK(CKEY, aborted);
	if
	:: atomic { A_ACTIVE -> printf("MSC: %d 409 already purchased\n", _pid); commit() }; goto done
	/* the purchase lock on a fresh id: nobody else can know the id yet, so it is free */
	:: atomic { !A_ACTIVE -> assert(lk[BKEY] == 0); GRANT(BKEY) }
	fi;
	/* INSERT of B, pending (active): waits for an uncommitted active version of A, then raises
	   IntegrityError if A is active (CheckoutConflict, 409) */
	atomic {
		INDEX_QUIET(!pactA && !A_ACTIVE)
		!pactA ->
		if
		:: A_ACTIVE -> printf("MSC: %d IntegrityError (one active): 409\n", _pid); goto aborted
		:: else -> bowner = me; wB = 1; printf("MSC: %d inserts B\n", _pid)
		fi
	};
	/* Stripe creates the session; or fails (502), nothing kept, which is also what a crash is */
	if
	:: atomic { commit(); printf("MSC: %d 200 with B's session\n", _pid) }; goto done
	:: atomic { printf("MSC: %d Stripe fails: 502\n", _pid) }; goto aborted
	fi;
aborted:
	atomic { rollback() };
done:
	skip
}

/* --- Stripe: a refund that counts may fail later (an expired card): refund.failed ---------- */
proctype StripeFails() {
end_wait:
	do
	:: atomic { sst[0] == R_COUNTS -> sst[0] = R_FAILED; ev_failed[0] = 1; printf("MSC: refund 0 fails at Stripe (sends refund.failed)\n") }
	:: atomic { sst[1] == R_COUNTS -> sst[1] = R_FAILED; ev_failed[1] = 1; printf("MSC: refund 1 fails at Stripe (sends refund.failed)\n") }
	od
}

/* --- webhooks.handle_event of refund.created / refund.failed of refund k, redelivered until a
       2xx: the purchase's lock, the refund merged, A re-derived ----------------------------- */
proctype Delivery(byte k; byte st) {
	TXN_LOCALS;
	byte s0, s1;
	bit sr;
end_wait:
	(st == R_COUNTS && ev_created[k]) || (st == R_FAILED && ev_failed[k]);
attempt:
	LOCK(PKEY, failed);
	READ_A_MERGE(k, st);
	if
	:: nk[0] == kst[0] && nk[1] == kst[1] -> skip   /* stale: nothing new */
	:: else ->
		CLASH_CHECK(failed);
		WRITE_A(refused)
	fi;
	/* (a crash here is, to every other process, a later delivery; one after the commit, a
	   redelivery that is stale: README) */
	atomic { commit(); printf("MSC: %d answers 200 (refund %d: %d)\n", _pid, k, st) };
	goto done;
failed:                          /* 503: Stripe redelivers */
	atomic { rollback() };
	goto attempt;
refused:                         /* IntegrityError: 500, recorded failed. Every redelivery meets
	                            the same rows and fails the same way until one of them changes */
	atomic { rollback(); s0 = kst[0]; s1 = kst[1]; sr = rev };
	atomic { kst[0] != s0 || kst[1] != s1 || rev != sr || !exB -> printf("MSC: %d redelivered\n", _pid) };
	goto attempt;
done:
	skip
}

init {
	atomic {
		run Refund(0, 3);        /* pid 1: Idempotency-Key 0, amount 3 */
		run Refund(1, FULL);     /* pid 2: Idempotency-Key 1, no amount: what is left */
		run Checkout();          /* pid 3 */
		run StripeFails();       /* pid 4 */
		run Delivery(0, R_COUNTS);  /* pid 5: refund.created of refund 0 */
		run Delivery(1, R_COUNTS);  /* pid 6 */
		run Delivery(0, R_FAILED);  /* pid 7: refund.failed of refund 0 */
		run Delivery(1, R_FAILED)   /* pid 8 */
	};
	/* every process has finished, or waits for something that will never come */
	timeout ->
	SAFETY;
	/* every refund.created and refund.failed was applied: paystore knows each refund as Stripe does */
	assert(kst[0] == sst[0] && kst[1] == sst[1])
}
