"""The authoring loop: what a definition's author sees while writing it (previews of
the emails a lead will receive, a gallery of every email)."""
