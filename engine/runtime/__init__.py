"""Running the plan for real (`fnl run`): state kept in a database, events in, actions out.
Built piece by piece; `codec` is the first: how a lead's state is written down."""
