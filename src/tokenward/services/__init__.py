"""Application services: what the HTTP edges and the CLI call (admin actions, console queries,
password sign-in, userinfo claims, demo seeding). Each gets its stores and collaborators in its
constructor from the composition root; none imports a storage adapter or a web framework."""
