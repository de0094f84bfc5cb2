-- The dashboard role reads the dashboard schema and nothing else, whatever its session sets
-- (default_transaction_read_only is only a default: SET ... = off turns it off). So besides its
-- SELECT grants it gets no temporary tables, no schemas, no large objects, and no advisory locks
-- (holding the append lock would stall ingestion). The writer role and the migrating owner keep them.
DO $$
DECLARE
    f regprocedure;
BEGIN
    EXECUTE format('REVOKE CREATE, TEMPORARY ON DATABASE %I FROM PUBLIC', current_database());
    EXECUTE format('GRANT TEMPORARY ON DATABASE %I TO newsflow_writer, %I', current_database(), current_user);
    IF NOT (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) THEN
        RAISE NOTICE 'not a superuser: large-object and advisory-lock functions stay executable by PUBLIC';
        RETURN;
    END IF;
    FOR f IN
        SELECT p.oid::regprocedure FROM pg_proc p
        WHERE p.pronamespace = 'pg_catalog'::regnamespace
          AND (p.proname LIKE 'pg\_%advisory%' OR p.proname LIKE 'lo\_%' OR p.proname IN ('lowrite', 'loread'))
    LOOP
        EXECUTE format('REVOKE EXECUTE ON FUNCTION %s FROM PUBLIC', f);
        EXECUTE format('GRANT EXECUTE ON FUNCTION %s TO newsflow_writer, %I', f, current_user);
    END LOOP;
END $$;
