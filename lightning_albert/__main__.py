from lightning_albert.cli import main

if __name__ == "__main__":  # the guard ddp_spawn needs when it re-imports this module
    main()
