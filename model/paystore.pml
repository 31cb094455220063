/*
 * paystore's payment protocol, for Spin. model/README.md maps every step to the code.
 *
 * One user buys one program. Two checkout requests (a double click, or a retry after a 502)
 * race; Stripe may create a session, let the buyer pay it and deliver its events at any
 * moment, even before its create call has answered and even if that checkout then rolls back.
 * Three webhook deliveries (checkout.session.completed twice at once, and, for a delayed
 * payment method, checkout.session.async_payment_succeeded) are redelivered after every 5xx or
 * lost answer. Reconcile and the return page apply a Stripe snapshot taken outside any
 * transaction. Crashes (the connection drops) and lock timeouts happen within a shared budget
 * of FAULTS.
 *
 * Broken variants, each expected to produce a counterexample:
 *   -DNO_LOCK               no advisory lock at all
 *   -DTWO_KEYS              the webhook locks webhook:session:<id>, the others purchase:complete:<id>
 *   -DSESSION_LOCK_POOLED   pg_advisory_lock/unlock (session level) behind a transaction pooler
 */

#ifndef FAULTS
#define FAULTS 1
#endif

#define NOROW 2
#define NOEV 2
#define NOSESSION 2

/* advisory lock keys */
#define CREATE_KEY 0            /* purchase:create:<user_id>:<program_id> */
#define PKEY(p) (1 + (p))       /* purchase:complete:<purchase_id> */
#define SKEY(s) (3 + (s))       /* webhook:session:<checkout_session_id> */
#if defined(TWO_KEYS)
#define WEBHOOK_KEY(p) SKEY(p)  /* the original bug: not the key that checkout holds */
#else
#define WEBHOOK_KEY(p) PKEY(p)
#endif

/* payment facts (models.PaymentFact), in the only order they move: forward */
#define NONE 0
#define AWAITING 1
#define PAID 2

/* a Checkout Session as Stripe sees it */
#define S_NONE 0                /* not created */
#define S_OPEN 1
#define S_UNPAID 2              /* complete, a delayed payment still processing */
#define S_PAID 3

/* events (the index is the Stripe event id) */
#define E_COMPLETED 0           /* checkout.session.completed: paid, or unpaid if delayed */
#define E_ASYNC_PAID 1          /* checkout.session.async_payment_succeeded */

/* --- PostgreSQL --------------------------------------------------------------------------- */
/* Holder of each advisory lock: a transaction (pid + 1) for pg_advisory_xact_lock, a server
   connection (SERVER(s)) for a session-level pg_advisory_lock, whose re-entries lkn counts. */
byte lk[5];
#if defined(SESSION_LOCK_POOLED)
#define SERVER(s) (20 + (s))
byte lkn[5];
bit srvbusy[2];                 /* PgBouncer: a server connection runs one transaction at a time */
#endif

/* purchases: the committed version of each row (purchase p pays through session p) */
bit ex[2];                      /* the row exists */
byte pay[2];                    /* payment fact */
bit rev[2];                     /* review_reason set: status needs_review, not active */
bit sess[2];                    /* stripe_session_id stored */
/* the uncommitted version: its writer (pid + 1, holding the row lock), and whether it is active */
byte rowner[2];
bit pact[2];

/* stripe_events: the committed record, and the transaction whose insert is uncommitted */
bit evdone[2];
byte evowner[2];

/* --- Stripe ------------------------------------------------------------------------------- */
byte stripe[2];                 /* S_* of session p */
byte paid_s = NOSESSION;        /* the session the buyer paid */
bit delayed;                    /* paid with a delayed method: completed/unpaid, then async */
bit emitted[2];                 /* Stripe has sent event e, and redelivers it until a 2xx */

byte faults = FAULTS;           /* crashes and lock timeouts still allowed */

/* --- ghost state for the properties ------------------------------------------------------- */
byte acked[2];                  /* strongest payment fact a webhook of purchase p answered 2xx for */
byte applied[2];                /* commits that applied event e */
bit by_checkout[2];             /* checkout p committed its purchase (it was never recovered) */

#define ACTIVE(p) (ex[p] && !rev[p])
#define FACT(e) (((e) == E_ASYNC_PAID || !delayed) -> PAID : AWAITING)
#define MAX(a, b) (((a) > (b)) -> (a) : (b))
#define SNAPSHOT(st) (((st) == S_PAID) -> PAID : (((st) == S_UNPAID) -> AWAITING : NONE))
/* A paid session ends completed; or needs_review, which the rules allow only for a purchase that
   recovery recreated while another purchase of the user and program was active. */
#define SETTLED(p) (ex[p] && pay[p] == PAID && (!rev[p] || !by_checkout[p]))

/* checked at every commit and in every final state */
#define SAFETY \
	assert(!(ACTIVE(0) && ACTIVE(1)));                /* one active purchase per user+program */ \
	assert(pay[0] >= acked[0] && pay[1] >= acked[1]); /* no 2xx for an effect not committed */ \
	assert(applied[0] <= 1 && applied[1] <= 1)        /* at most one transition per event */

/* --- transactions ------------------------------------------------------------------------- */
/* Locals of every process that runs transactions. me: pid + 1; wp, we: the row and the event
   record it wrote, uncommitted; npay, nrev, nsess: that row's new version; sv, held: server
   connection and session locks held (SESSION_LOCK_POOLED only). */
#define TXN_LOCALS byte me = _pid + 1, wp = NOROW, we = NOEV, npay; bit nrev, nsess; byte sv, held

#define REL(k) if :: lk[k] == me -> lk[k] = 0 :: else -> skip fi
/* COMMIT, ROLLBACK and a dropped connection all release transaction-level locks */
#define RELEASE_XACT_LOCKS REL(0); REL(1); REL(2); REL(3); REL(4)

#if defined(SESSION_LOCK_POOLED)
/* pool_mode=transaction: each transaction runs on whichever server connection is idle */
#define BEGIN atomic { if :: srvbusy[0] == 0 -> sv = 0 :: srvbusy[1] == 0 -> sv = 1 fi; srvbusy[sv] = 1 }
#define END_SERVER srvbusy[sv] = 0
#define HOLDER SERVER(sv)
#define GRANT(k) lk[k] = HOLDER; lkn[k]++; held = held | (1 << (k)); printf("MSC: %d locks key %d on server %d\n", _pid, k, sv)
#else
#define BEGIN
#define END_SERVER skip
#define HOLDER me
#define GRANT(k) lk[k] = HOLDER; printf("MSC: %d locks key %d\n", _pid, k)
#endif

/* pg_advisory_xact_lock(k) (pg_advisory_lock(k) if SESSION_LOCK_POOLED) under lock_timeout:
   waits while another holds the lock; a timeout (a fault) raises LockTimeout: goto busy */
#if defined(NO_LOCK)
#define LOCK(k, busy) skip
#else
#define LOCK(k, busy) \
	if \
	:: atomic { lk[k] == 0 || lk[k] == HOLDER -> GRANT(k) } \
	:: atomic { faults > 0 && lk[k] != 0 && lk[k] != HOLDER -> faults--; printf("MSC: %d lock_timeout on key %d\n", _pid, k) }; goto busy \
	fi
#endif

/* In the correct protocol the advisory locks serialize every writer of a row and every insert of
   an event id before it reaches the table, so no statement ever waits for a row lock or a unique
   index entry (and lock_timeout can only fire on an advisory lock). Asserted there. */
#if !defined(NO_LOCK) && !defined(TWO_KEYS) && !defined(SESSION_LOCK_POOLED)
#define NEVER_WAITS(free) assert(free);
#else
#define NEVER_WAITS(free)
#endif

/* The next step, or instead a crash (the worker is killed, its connection drops): goto to */
#define OR_CRASH(to) :: atomic { faults > 0 -> faults--; printf("MSC: %d crashes\n", _pid) }; goto to

/* UPDATE of row p with the version computed from an earlier read: waits for the row lock of a
   concurrent writer, then overwrites whatever that writer committed (READ COMMITTED) */
#define ROW_UPDATE(p) atomic { NEVER_WAITS(rowner[p] == 0) rowner[p] == 0 -> rowner[p] = me; pact[p] = !nrev; wp = p; \
	printf("MSC: %d updates purchase %d: payment fact %d\n", _pid, p, npay) }

/* INSERT of row p: the primary key, and the partial unique index on active purchases, wait for
   a concurrent uncommitted conflicting version, then raise IntegrityError: goto clash */
#define ROW_INSERT(p, clash) \
	atomic { \
		NEVER_WAITS(rowner[p] == 0 && (nrev || rowner[1 - (p)] == 0 || !(ACTIVE(1 - (p)) || pact[1 - (p)]))) \
		rowner[p] == 0 && (nrev || rowner[1 - (p)] == 0 || !(ACTIVE(1 - (p)) || pact[1 - (p)])) -> \
		if \
		:: ex[p] -> printf("MSC: %d IntegrityError (primary key)\n", _pid); goto clash \
		:: !ex[p] && !nrev && ACTIVE(1 - (p)) -> printf("MSC: %d IntegrityError (one active)\n", _pid); goto clash \
		:: else -> rowner[p] = me; pact[p] = !nrev; wp = p; \
			printf("MSC: %d inserts purchase %d: payment fact %d review %d\n", _pid, p, npay, nrev) \
		fi \
	}

/* COMMIT: the new versions become visible to every later statement; row and xact locks go */
inline commit() {
	printf("MSC: %d COMMIT\n", _pid);
	if
	:: wp != NOROW -> ex[wp] = 1; pay[wp] = npay; rev[wp] = nrev; sess[wp] = nsess; rowner[wp] = 0; pact[wp] = 0
	:: else -> skip
	fi;
	if
	:: we != NOEV -> evdone[we] = 1; evowner[we] = 0; applied[we]++
	:: else -> skip
	fi;
	RELEASE_XACT_LOCKS;
	END_SERVER;
	SAFETY;
	wp = NOROW; we = NOEV
}

/* ROLLBACK, or PostgreSQL noticing the dropped connection: uncommitted versions vanish */
inline rollback() {
	printf("MSC: %d ROLLBACK\n", _pid);
	if :: wp != NOROW -> rowner[wp] = 0; pact[wp] = 0 :: else -> skip fi;
	if :: we != NOEV -> evowner[we] = 0 :: else -> skip fi;
	RELEASE_XACT_LOCKS;
	END_SERVER;
	wp = NOROW; we = NOEV
}

#if defined(SESSION_LOCK_POOLED)
/* pg_advisory_unlock(k) in a `finally` after the transaction: a statement of its own, which the
   pooler runs on any idle server connection. On one that does not hold the lock it is a no-op
   (it returns false), and the lock stays on the other server connection. */
#define UNLOCK_ONE(k) \
	if \
	:: held & (1 << (k)) -> \
		if :: srvbusy[0] == 0 -> sv = 0 :: srvbusy[1] == 0 -> sv = 1 fi; \
		if \
		:: lk[k] == SERVER(sv) -> lkn[k]--; if :: lkn[k] == 0 -> lk[k] = 0 :: else -> skip fi; \
			printf("MSC: %d unlocks key %d on server %d\n", _pid, k, sv) \
		:: else -> printf("MSC: %d unlock of key %d lands on server %d: no-op, the lock stays\n", _pid, k, sv) \
		fi \
	:: else -> skip \
	fi
#define UNLOCK_SESSION_LOCKS atomic { UNLOCK_ONE(0); UNLOCK_ONE(1); UNLOCK_ONE(2); UNLOCK_ONE(3); UNLOCK_ONE(4); held = 0 }
/* A client that dies inside a transaction makes PgBouncer close that server connection, which
   drops every session lock the server connection held. */
#define DROP(k) if :: lk[k] == SERVER(sv) -> lk[k] = 0; lkn[k] = 0 :: else -> skip fi
#define CRASH_ROLLBACK atomic { DROP(0); DROP(1); DROP(2); DROP(3); DROP(4); held = 0; rollback() }
#else
#define UNLOCK_SESSION_LOCKS
#define CRASH_ROLLBACK atomic { rollback() }
#endif

/* A 2xx: the event's record and effect must be committed. */
#define ANSWER_2XX \
	printf("MSC: %d answers 200 for event %d (purchase %d payment fact %d)\n", _pid, e, p, pay[p]); \
	assert(evdone[e] && pay[p] >= fact); acked[p] = MAX(acked[p], fact)

/* --- checkout.start_checkout / _create_purchase ------------------------------------------- */
proctype Checkout(byte c) {      /* c: the purchase id it generates, and that purchase's session */
	TXN_LOCALS;
	BEGIN;
	LOCK(CREATE_KEY, aborted);
	if
	:: atomic { ACTIVE(1 - c) -> commit() }; goto finished  /* 200 the open one, or 409 */
	/* the purchase lock on a fresh id: nobody else can know the id yet, so it is free */
	:: atomic { !ACTIVE(1 - c) ->
#if !defined(NO_LOCK)
		assert(lk[PKEY(c)] == 0); GRANT(PKEY(c))
#else
		skip
#endif
	}
	fi;
	npay = NONE; nrev = 0; nsess = 0;
	ROW_INSERT(c, aborted);      /* 409 CheckoutConflict */
	/* Stripe create: answered; or failed, nothing created (502); or created but too late */
	if
	:: atomic { stripe[c] = S_OPEN; printf("MSC: %d Stripe creates session %d, answers\n", _pid, c) }
	:: atomic { stripe[c] = S_OPEN; printf("MSC: %d Stripe creates session %d, answer too late: 502\n", _pid, c) }; goto aborted
	:: atomic { printf("MSC: %d Stripe fails: 502\n", _pid) }; goto aborted
	fi;
	nsess = 1;                   /* store session id and url */
	if
	:: atomic { by_checkout[c] = 1; commit() }
	OR_CRASH(crashed)
	fi;
	goto finished;
aborted:                         /* 502, 503 or 409: rollback, no row left behind */
	atomic { rollback() };
finished:
	UNLOCK_SESSION_LOCKS;
	goto done;
crashed:
	CRASH_ROLLBACK;
done:
	skip
}

/* --- webhooks.handle_event: one delivery of event e, redelivered until it is answered 2xx --- */
proctype Delivery(byte e) {
	TXN_LOCALS;
	byte p, fact, read;
	bit dup;
end_wait:
	atomic { emitted[e] -> p = paid_s; fact = FACT(e) };
attempt:
	BEGIN;
	LOCK(WEBHOOK_KEY(p), failed);
	/* store.events.record_arrival: INSERT ... ON CONFLICT (stripe_event_id) DO NOTHING waits for a
	   concurrent uncommitted insert of the same id; a committed one makes this a duplicate */
	atomic {
		NEVER_WAITS(evowner[e] == 0)
		evowner[e] == 0 ->
		if
		:: evdone[e] -> dup = 1; printf("MSC: %d event %d already recorded\n", _pid, e)
		:: else -> evowner[e] = me; we = e; printf("MSC: %d records event %d\n", _pid, e)
		fi
	};
	if
	:: dup -> atomic { dup = 0; commit(); ANSWER_2XX }; goto answered
	:: else -> skip
	fi;
	if
	:: atomic { ex[p] -> read = pay[p]; npay = MAX(read, fact); nrev = rev[p]; nsess = sess[p];
		printf("MSC: %d reads purchase %d: payment fact %d\n", _pid, p, read) };
		/* lifecycle.apply to the row as loaded */
		if
		:: npay != read -> ROW_UPDATE(p)
		:: else -> skip
		fi
	:: atomic { !ex[p] -> read = NONE; printf("MSC: %d finds no purchase %d: recovery\n", _pid, p) };
		/* recovery.recover_purchase: the checkout rolled back after Stripe created the session */
		LOCK(CREATE_KEY, failed);
		/* another active purchase of the user and program: needs_review, grants nothing */
		atomic { nrev = (ACTIVE(0) || ACTIVE(1)); npay = fact; nsess = 1 };
		ROW_INSERT(p, failed)    /* IntegrityError: 500, recorded failed, Stripe redelivers */
	fi;
	if
	:: atomic { commit(); ANSWER_2XX }
	/* committed, but the worker dies before answering (and before any `finally` unlocks) */
	:: atomic { faults > 0 -> faults--; commit(); held = 0; printf("MSC: %d dies before answering\n", _pid) }; goto attempt
	OR_CRASH(crashed)
	fi;
answered:
	UNLOCK_SESSION_LOCKS;
	goto done;
failed:                          /* 5xx (lock timeout, IntegrityError): Stripe redelivers */
	atomic { rollback() };
	UNLOCK_SESSION_LOCKS;
	goto attempt;
crashed:                         /* no answer: Stripe redelivers */
	CRASH_ROLLBACK;
	goto attempt;
done:
	skip
}

/* --- reconcile._reconcile_one; the buyer's return page (GET /checkout/return,
       fulfilment.return_from_checkout) does the same through the same code ------------------- */
proctype Snapshot(bit return_page) {
	TXN_LOCALS;
	byte p, fact, read;
end_wait:
	/* Both read a committed open purchase with a session id (in a transaction of their own),
	   then ask Stripe outside any transaction. A session nobody paid says `open`, which
	   changes nothing, so only the paid session's purchase is looked at. */
	atomic { paid_s != NOSESSION && ex[paid_s] && sess[paid_s] && !rev[paid_s] && pay[paid_s] != PAID -> p = paid_s };
	atomic { fact = SNAPSHOT(stripe[p]);
		printf("MSC: %d retrieves session %d from Stripe: payment fact %d\n", _pid, p, fact) };
	BEGIN;
	LOCK(PKEY(p), aborted);
	/* db.get_one(Purchase, populate_existing=True), then lifecycle.apply */
	atomic { read = pay[p]; npay = MAX(read, fact); nrev = rev[p]; nsess = sess[p];
		printf("MSC: %d reads purchase %d: payment fact %d\n", _pid, p, read) };
	if
	:: npay != read -> ROW_UPDATE(p)
	:: else -> skip
	fi;
	if
	:: atomic { commit() }
	OR_CRASH(crashed)
	fi;
	goto finished;
aborted:                         /* lock timeout: reported; the next run retries */
	atomic { rollback() };
finished:
	UNLOCK_SESSION_LOCKS;
	goto done;
crashed:
	CRASH_ROLLBACK;
done:
	skip
}

/* --- Stripe: the buyer pays one created session, at any moment ------------------------------ */
proctype Stripe() {
	byte s;
end_wait:
	atomic {
		if
		:: stripe[0] == S_OPEN -> s = 0
		:: stripe[1] == S_OPEN -> s = 1
		fi;
		paid_s = s;
		emitted[E_COMPLETED] = 1;
		if
		:: stripe[s] = S_PAID;
			printf("MSC: buyer pays session %d; Stripe sends event 0 (completed, paid)\n", s)
		:: stripe[s] = S_UNPAID; delayed = 1;
			printf("MSC: buyer pays session %d by a delayed method; Stripe sends event 0 (completed, unpaid)\n", s)
		fi
	};
	if
	:: delayed -> atomic { stripe[s] = S_PAID; emitted[E_ASYNC_PAID] = 1;
		printf("MSC: the payment of session %d succeeds; Stripe sends event 1 (async_payment_succeeded)\n", s) }
	:: else -> skip
	fi
}

init {
	atomic {
		run Checkout(0);
		run Checkout(1);
		run Stripe();
		run Delivery(E_COMPLETED);
		run Delivery(E_COMPLETED);
		run Delivery(E_ASYNC_PAID)
#if !defined(WITHOUT_SNAPSHOTS)  /* checkout and webhooks alone (README: the original race) */
		;
		run Snapshot(0);         /* reconcile */
		run Snapshot(1)          /* the return page */
#endif
	};
	/* every process has finished, or waits for something that will never come */
	timeout ->
	SAFETY;
	assert(paid_s == NOSESSION || SETTLED(paid_s))
}

ltl paid_ends_settled { [] ((paid_s != NOSESSION) -> <> (paid_s != NOSESSION && SETTLED(paid_s))) }
