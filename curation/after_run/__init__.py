"""Tools that read a written dataset: validate, the HTML report, export to the official IRG format (with
the official trainer's configs), and push to the Hugging Face Hub."""
