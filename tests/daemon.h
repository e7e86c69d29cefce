/* placeholder: filled by the HTTP integration tests */
